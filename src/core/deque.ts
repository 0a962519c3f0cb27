/** A FIFO with O(1) amortised push and shift, and removal at any index for the rare merge. @internal */
export class Deque<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    // Reclaim the consumed prefix once it outweighs what is left.
    if (this.#head >= 64 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** The item at `index` from the front, or undefined. */
  at(index: number): T | undefined {
    return this.#items[this.#head + index];
  }

  removeAt(index: number): void {
    this.#items.splice(this.#head + index, 1);
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}
