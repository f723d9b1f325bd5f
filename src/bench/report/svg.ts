/**
 * Hand-written SVG line charts (no dependency): categorical x (one point per stage), linear y from 0,
 * "nice" ticks, a legend. Each chart is a standalone document (`xmlns` set, fonts inline) usable in a
 * README or inlined in the HTML report.
 */

export interface Series {
  name: string;
  /** One value per x label; NaN leaves a gap. */
  values: readonly number[];
  color?: string;
  dashed?: boolean;
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  x: readonly string[];
  series: readonly Series[];
  width?: number;
  height?: number;
}

const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#4b5563'];

export function escapeXml(s: string): string {
  return s.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

/** Round tick steps (1, 2, 5 × 10^k) covering [0, max] in about `count` steps. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = 0; v < max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1]! < max) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(12)));
  return ticks;
}

/** A compact number for axes and tables: 12.3k, 0.156, 1.2M. */
export function fmt(v: number): string {
  if (!Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${(v / 1e3).toPrecision(3)}k`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  if (a === 0) return '0';
  return v.toPrecision(3);
}

/** An axis tick: `fmt` without trailing zeros (25, 2.5, 12.5k). */
export function fmtTick(v: number): string {
  return fmt(v)
    .replace(/(\.\d*?)0+(?=[kM]?$)/, '$1')
    .replace(/\.(?=[kM]?$)/, '');
}

export function lineChart(c: LineChart): string {
  const W = c.width ?? 640;
  const H = c.height ?? 360;
  const m = { top: 56, right: 20, bottom: 56, left: 64 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  let max = 0;
  for (const s of c.series) for (const v of s.values) if (Number.isFinite(v) && v > max) max = v;
  const ticks = niceTicks(max);
  const top = ticks[ticks.length - 1]!;
  const n = c.x.length;
  const xs = (i: number): number => m.left + (n <= 1 ? pw / 2 : (pw * i) / (n - 1));
  const ys = (v: number): number => m.top + ph - (ph * v) / top;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
  );
  out.push(`<title>${escapeXml(c.title)}</title>`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">${escapeXml(c.title)}</text>`,
  );
  for (const t of ticks) {
    const y = ys(t).toFixed(1);
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#e5e7eb"/>`);
    out.push(
      `<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`,
    );
  }
  out.push(
    `<line x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}" stroke="#6b7280"/>` +
      `<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}" stroke="#6b7280"/>`,
  );
  const every = Math.max(1, Math.ceil(n / 16));
  for (let i = 0; i < n; i++) {
    if (i % every !== 0 && i !== n - 1) continue;
    out.push(
      `<text x="${xs(i).toFixed(1)}" y="${m.top + ph + 16}" text-anchor="middle">${escapeXml(c.x[i]!)}</text>`,
    );
  }
  out.push(
    `<text x="${m.left + pw / 2}" y="${H - 14}" text-anchor="middle" fill="#374151">${escapeXml(c.xLabel)}</text>`,
  );
  out.push(
    `<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#374151">` +
      `${escapeXml(c.yLabel)}</text>`,
  );
  c.series.forEach((s, k) => {
    const color = s.color ?? PALETTE[k % PALETTE.length]!;
    let d = '';
    let pen = false;
    const dots: string[] = [];
    for (let i = 0; i < n; i++) {
      const v = s.values[i];
      if (v === undefined || !Number.isFinite(v)) {
        pen = false;
        continue;
      }
      const x = xs(i).toFixed(1);
      const y = ys(v).toFixed(1);
      d += `${pen ? 'L' : 'M'}${x} ${y}`;
      pen = true;
      dots.push(
        `<circle cx="${x}" cy="${y}" r="3" fill="${color}"><title>${escapeXml(`${s.name} @ ${c.x[i]}: ${fmt(v)}`)}</title></circle>`,
      );
    }
    if (d !== '') {
      out.push(
        `<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      );
    }
    out.push(...dots);
    const lx = m.left + 10 + k * Math.min(140, pw / Math.max(1, c.series.length));
    out.push(
      `<rect x="${lx.toFixed(1)}" y="${m.top - 20}" width="12" height="3" fill="${color}"/>` +
        `<text x="${(lx + 16).toFixed(1)}" y="${m.top - 16}" fill="#111827">${escapeXml(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}
