/** One unit of work's place in its session's line: taken once it holds the session's lock. */
export interface Ticket {
  readonly sessionId: string;
  /** Set while the unit waits for the units ahead of it to announce. */
  wake: (() => void) | undefined;
}

/**
 * Announcements in commit order. A session's units commit in the order they
 * take its lock (the lock is held until the commit), but their replies can
 * come back in any order, and so would their announcements: each unit takes
 * a ticket when it holds the lock, and announces only once every unit ahead
 * of it in that session's line has announced or failed.
 */
export class AnnouncementOrder {
  readonly #lines = new Map<string, Ticket[]>();

  /** Called by a unit as soon as it holds its session's lock. */
  enter(sessionId: string): Ticket {
    const ticket: Ticket = { sessionId, wake: undefined };
    const line = this.#lines.get(sessionId);
    if (line === undefined) this.#lines.set(sessionId, [ticket]);
    else line.push(ticket);
    return ticket;
  }

  /** Undefined when `ticket` is first in its line; otherwise resolves once it is. */
  turn(ticket: Ticket): Promise<void> | undefined {
    if (this.#lines.get(ticket.sessionId)?.[0] === ticket) return undefined;
    return new Promise((resolve) => (ticket.wake = resolve));
  }

  /** The unit has announced (or failed): the next in its line may go. */
  leave(ticket: Ticket): void {
    const line = this.#lines.get(ticket.sessionId);
    if (line === undefined) return;
    const at = line.indexOf(ticket);
    if (at === -1) return;
    line.splice(at, 1);
    if (line.length === 0) this.#lines.delete(ticket.sessionId);
    else if (at === 0) line[0]!.wake?.();
  }
}
