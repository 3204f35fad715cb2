// A small time-series chart drawn as inline SVG (no library): one or more series sharing the x axis, each
// scaled to its own maximum so a count and an amount of money fit in one box. Labels go in as text nodes.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

/**
 * A chart in `host` (an <svg> element). `series`: [{name, color, format}]. Returns {push(values), clear()}:
 * push one sample (an array, one value per series) and the chart redraws, keeping the last `keep` samples.
 */
export function lineChart(host, series, { keep = 120, height = 120 } = {}) {
  const samples = [];
  const width = 600;
  host.setAttribute("viewBox", `0 0 ${width} ${height}`);
  host.setAttribute("preserveAspectRatio", "none");
  host.setAttribute("role", "img");

  function draw() {
    host.replaceChildren();
    for (let i = 1; i < 4; i++) {
      const y = (height * i) / 4;
      host.append(svg("line", { x1: 0, x2: width, y1: y, y2: y, class: "grid" }));
    }
    if (samples.length < 2) return;
    const step = width / (keep - 1);
    const start = width - (samples.length - 1) * step;
    series.forEach((s, index) => {
      const values = samples.map((sample) => sample[index] ?? 0);
      const top = Math.max(...values, 1);
      const points = values.map((v, i) => `${(start + i * step).toFixed(1)},${(height - 6 - (v / top) * (height - 16)).toFixed(1)}`);
      const area = `M${start.toFixed(1)},${height} L${points.join(" L")} L${width},${height} Z`;
      host.append(svg("path", { d: area, fill: s.color, "fill-opacity": 0.1, stroke: "none" }));
      host.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: s.color, "stroke-width": 2.5, "vector-effect": "non-scaling-stroke", "stroke-linejoin": "round" }));
    });
    const title = svg("title");
    const latest = samples[samples.length - 1];
    title.textContent = series.map((s, i) => `${s.name}: ${s.format ? s.format(latest[i]) : latest[i]}`).join(", ");
    host.append(title);
    host.setAttribute("aria-label", title.textContent);
  }

  draw();
  return {
    push(values) {
      samples.push(values);
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
  };
}

/** A legend for `series` (HTML, text only). */
export function legend(series) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = s.color;
    item.append(swatch, document.createTextNode(s.name));
    box.append(item);
  }
  return box;
}
