/**
 * One scenario's chart: each contender's median divided by the floor's, as
 * horizontal bars, herald highlighted and a line at 1× (the floor). The axis
 * is logarithmic when the ratios span more than 20×, and then each bar runs
 * from 1× to its ratio (left of the line: faster than the floor). Hand-written SVG.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chartFile, floorOf, x, type Result } from './report.js';

const WIDTH = 720;
const LABEL_WIDTH = 130;
const VALUE_WIDTH = 70;
const ROW_HEIGHT = 22;
const TOP = 44;
const BOTTOM = 30;

const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const NICE = [1, 2, 5];

/** The largest 1, 2 or 5 × 10ⁿ at most `value` (`down`), or the smallest at least `value`. */
function niceBound(value: number, down: boolean): number {
  const decade = 10 ** Math.floor(Math.log10(value));
  const candidates = [...NICE, 10].map((step) => step * decade);
  return down ? candidates.filter((c) => c <= value * (1 + 1e-9)).pop()! : candidates.find((c) => c >= value * (1 - 1e-9))!;
}

/** Tick values for a log axis: 1, 2 and 5 per decade, from `low` to `high`. */
function logTicks(low: number, high: number): number[] {
  const ticks: number[] = [];
  for (let decade = Math.floor(Math.log10(low)); decade <= Math.ceil(Math.log10(high)); decade++) {
    for (const step of NICE) {
      const tick = step * 10 ** decade;
      if (tick >= low * (1 - 1e-9) && tick <= high * (1 + 1e-9)) ticks.push(tick);
    }
  }
  return ticks;
}

/** Tick values for a linear axis from 0 to the first at least `high`: about five, at round steps. */
function linearTicks(high: number): number[] {
  const raw = high / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let tick = 0; ticks.length === 0 || ticks[ticks.length - 1]! < high - 1e-9; tick += step) ticks.push(Number(tick.toPrecision(6)));
  return ticks;
}

const tickLabel = (tick: number): string => `${tick >= 100 ? tick.toFixed(0) : Number(tick.toPrecision(3))}×`;

/** The chart of `scenario`, or undefined when it has no floor to divide by. */
export function ratioChart(scenario: string, byContender: Record<string, Result>): string | undefined {
  const floorValue = floorOf(byContender);
  if (floorValue === undefined) return undefined;
  const rows = Object.entries(byContender)
    .map(([name, result]) => ({ name, ratio: result.median / floorValue }))
    .filter((row) => row.ratio > 0)
    .sort((a, b) => a.ratio - b.ratio);
  const ratios = rows.map((row) => row.ratio);
  const lowest = Math.min(1, ...ratios);
  const highest = Math.max(1, ...ratios);
  const log = highest / lowest > 20;
  const plotLeft = LABEL_WIDTH;
  const plotWidth = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
  let scale: (ratio: number) => number;
  let ticks: number[];
  if (log) {
    const low = niceBound(lowest, true);
    const high = niceBound(highest, false);
    scale = (ratio) => plotLeft + (plotWidth * Math.log10(ratio / low)) / Math.log10(high / low);
    ticks = logTicks(low, high);
  } else {
    ticks = linearTicks(highest * 1.05);
    const high = ticks[ticks.length - 1]!;
    scale = (ratio) => plotLeft + (plotWidth * ratio) / high;
  }
  const height = TOP + rows.length * ROW_HEIGHT + BOTTOM;
  const plotBottom = TOP + rows.length * ROW_HEIGHT;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="8" y="18" font-size="13" font-weight="600" fill="#111">${escape(scenario)}</text>`,
    `<text x="8" y="34" fill="#555">median ÷ the floor's (${log ? 'log scale' : 'linear scale'}; shorter is faster)</text>`,
  ];
  for (const tick of ticks) {
    const tx = scale(tick).toFixed(1);
    out.push(`<line x1="${tx}" y1="${TOP - 4}" x2="${tx}" y2="${plotBottom}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${tx}" y="${plotBottom + 16}" text-anchor="middle" fill="#555">${tickLabel(tick)}</text>`);
  }
  const base = log ? scale(1) : scale(0);
  rows.forEach((row, i) => {
    const y = TOP + i * ROW_HEIGHT;
    const isHerald = row.name === 'herald';
    const isFloor = row.name === 'floor';
    const fill = isHerald ? '#d9480f' : isFloor ? '#868e96' : '#4c6ef5';
    const end = scale(row.ratio);
    out.push(`<text x="${LABEL_WIDTH - 8}" y="${y + 15}" text-anchor="end" fill="#111"${isHerald ? ' font-weight="700"' : ''}>${escape(row.name)}</text>`);
    out.push(`<rect x="${Math.min(base, end).toFixed(1)}" y="${y + 4}" width="${Math.max(1, Math.abs(end - base)).toFixed(1)}" height="${ROW_HEIGHT - 8}" fill="${fill}"/>`);
    out.push(`<text x="${(Math.max(end, base) + 6).toFixed(1)}" y="${y + 15}" fill="#111"${isHerald ? ' font-weight="700"' : ''}>${x(row.ratio)}</text>`);
  });
  const one = scale(1).toFixed(1);
  out.push(`<line x1="${one}" y1="${TOP - 4}" x2="${one}" y2="${plotBottom}" stroke="#111" stroke-dasharray="4 3"/>`);
  out.push('</svg>', '');
  return out.join('\n');
}

/** Writes the chart of every scenario that has a floor into `dir`, replacing the charts there; returns how many. */
export function writeCharts(results: Record<string, Record<string, Result>>, dir: string): number {
  mkdirSync(dir, { recursive: true });
  for (const file of readdirSync(dir)) if (file.endsWith('.svg')) rmSync(join(dir, file));
  let count = 0;
  for (const [scenario, byContender] of Object.entries(results)) {
    const svg = ratioChart(scenario, byContender);
    if (svg === undefined) continue;
    writeFileSync(join(dir, chartFile(scenario)), svg);
    count++;
  }
  return count;
}
