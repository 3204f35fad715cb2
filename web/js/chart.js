// A small time-series chart drawn as inline SVG (no library): one or more series sharing the x axis, each
// scaled to its own maximum so a count and an amount of money fit in one box. Labels go in as text nodes.
//
// Lines only, no filled areas (a fill under a flat line at the top covered the whole plot in grey). Scaled
// to their own maximum, two series that grow together (units sold and GMV at one price) draw the very same
// line: so each series after the first is dashed (`DASHES`), and the legend shows each line as drawn, so
// both stay visible where they coincide.

const NS = "http://www.w3.org/2000/svg";
const DASHES = ["", "7 5", "2 4", "10 3 2 3"]; // one per series, in order (stroke-dasharray; "" = solid)
const WIDTHS = [2.5, 2.5, 3, 2.5];

function dash(index) {
  return DASHES[index % DASHES.length];
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

/**
 * A chart in `host` (an <svg> element). `series`: [{name, color, format}]. Returns {push(values), clear(),
 * caption}: push one sample (an array, one value per series) and the chart redraws, keeping the last `keep`
 * samples. The x axis spans the samples kept, from the first to the newest (at least `minSpanMs`), so a chart
 * opened a few seconds ago uses the whole width; `caption` (an element to show near the chart, e.g. in the
 * legend) says how much time that is.
 */
export function lineChart(host, series, { keep = 120, height = 120, minSpanMs = 10_000 } = {}) {
  const samples = []; // {at: ms, values: [...]}
  const width = 600;
  const caption = document.createElement("span");
  caption.className = "chart-span";
  host.setAttribute("viewBox", `0 0 ${width} ${height}`);
  host.setAttribute("preserveAspectRatio", "none");
  host.setAttribute("role", "img");

  function draw() {
    host.replaceChildren();
    for (let i = 1; i < 4; i++) {
      const y = (height * i) / 4;
      host.append(svg("line", { x1: 0, x2: width, y1: y, y2: y, class: "grid" }));
    }
    caption.textContent = samples.length ? "Collecting…" : "";
    if (samples.length < 2) return;
    const first = samples[0].at;
    const last = samples[samples.length - 1].at;
    const span = Math.max(last - first, minSpanMs);
    const x = (at) => ((at - first) / span) * width;
    series.forEach((s, index) => {
      const values = samples.map((sample) => sample.values[index] ?? 0);
      const top = Math.max(...values, 1);
      const points = samples.map((sample, i) => `${x(sample.at).toFixed(1)},${(height - 6 - (values[i] / top) * (height - 16)).toFixed(1)}`);
      const line = { points: points.join(" "), fill: "none", stroke: s.color, "stroke-width": WIDTHS[index % WIDTHS.length], "vector-effect": "non-scaling-stroke", "stroke-linejoin": "round", class: "series" };
      if (dash(index)) line["stroke-dasharray"] = dash(index);
      host.append(svg("polyline", { ...line, "data-series": s.name }));
    });
    const title = svg("title");
    const latest = samples[samples.length - 1].values;
    title.textContent = series.map((s, i) => `${s.name}: ${s.format ? s.format(latest[i]) : latest[i]}`).join(", ");
    host.append(title);
    host.setAttribute("aria-label", title.textContent);
    const seconds = Math.round(span / 1000);
    caption.textContent = seconds < 90 ? `Last ${seconds} s` : `Last ${Math.round(seconds / 60)} min`;
  }

  draw();
  return {
    push(values, at = Date.now()) {
      samples.push({ at, values });
      if (samples.length > keep) samples.shift();
      draw();
    },
    clear() {
      samples.length = 0;
      draw();
    },
    get length() {
      return samples.length;
    },
    caption,
  };
}

/**
 * A legend for `series` (text only): each name after a short line drawn as its chart line is (colour and
 * dashes), with the chart's time caption at its end when given.
 */
export function legend(series, chart) {
  const box = document.createElement("div");
  box.className = "legend";
  series.forEach((s, index) => {
    const item = document.createElement("span");
    item.dataset.series = s.name;
    const swatch = svg("svg", { class: "legend-line", viewBox: "0 0 24 8", "aria-hidden": "true" });
    const line = { x1: 1, x2: 23, y1: 4, y2: 4, stroke: s.color, "stroke-width": WIDTHS[index % WIDTHS.length], "stroke-linecap": "butt" };
    if (dash(index)) line["stroke-dasharray"] = dash(index).split(" ").map((n) => Number(n) / 2).join(" ");
    swatch.append(svg("line", line));
    item.append(swatch, document.createTextNode(s.name));
    box.append(item);
  });
  if (chart?.caption) box.append(chart.caption);
  return box;
}
