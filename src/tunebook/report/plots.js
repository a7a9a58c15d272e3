/* tunebook report plots: small, dependency-free SVG charts drawn from the page's JSON data.
   Embedded once per page. Every plot element gets data-rendered="<number of marks drawn>" so
   tests (and people) can check that nothing was silently dropped. */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
                   "#17becf", "#bcbd22", "#7f7f7f", "#393b79"];
  const W = 420, H = 280, M = {l: 62, r: 12, t: 12, b: 44};
  const DATA = JSON.parse(document.getElementById("tunebook-data").textContent);

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, s, attrs) {
    const t = el("text", Object.assign({x: x, y: y}, attrs || {}), parent);
    t.textContent = s;
    return t;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v !== "number") return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) {
      return v.toExponential(2).replace(/\.?0+e/, "e").replace("e+", "e");
    }
    return String(Number(v.toPrecision(4)));
  }
  // Scales: "linear", "log" (log10 x), "one_minus_log" (-log10(1 - x)).
  function fwd(type, v) {
    if (type === "log") return Math.log10(v);
    if (type === "log2") return Math.log2(v);
    if (type === "one_minus_log") return -Math.log10(1 - v);
    return v;
  }
  function inv(type, u) {
    if (type === "log") return Math.pow(10, u);
    if (type === "log2") return Math.pow(2, u);
    if (type === "one_minus_log") return 1 - Math.pow(10, -u);
    return u;
  }
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { return [lo]; }
    const step0 = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const err = step0 / mag;
    const step = mag * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return out;
  }
  function ticksFor(type, lo, hi) {  // lo, hi in transformed units
    if (type === "log2") {  // powers of two (batch sizes)
      const out = [];
      for (let u = Math.ceil(lo); u <= Math.floor(hi); u++) out.push(u);
      if (out.length >= 2) return out;
      // Under two doublings: round values, placed on the log2 axis.
      return niceTicks(Math.pow(2, lo), Math.pow(2, hi), 4).filter(v => v > 0).map(Math.log2);
    }
    if (type === "log" || type === "one_minus_log") {
      const out = [];
      for (let u = Math.ceil(lo); u <= Math.floor(hi); u++) out.push(u);
      // Many decades (a diverging loss): every k-th, at most 8 ticks.
      if (out.length > 8) { const k = Math.ceil(out.length / 8); return out.filter(u => u % k === 0); }
      if (out.length >= 3) return out;
      if (type === "log") {  // under three decades: 1-2-5 ticks, still at round values
        const fine = [];
        for (let d = Math.floor(lo); d <= Math.ceil(hi); d++) {
          for (const m of [1, 2, 5]) {
            const u = d + Math.log10(m);
            if (u >= lo && u <= hi) fine.push(u);
          }
        }
        if (fine.length >= 2) return fine;
      }
      if (out.length >= 2) return out;
    }
    return niceTicks(lo, hi, 5);
  }
  function frame(node, title) {
    node.innerHTML = "";
    if (title) { const h = document.createElement("div"); h.className = "plot-title";
      h.textContent = title; node.appendChild(h); }
    return el("svg", {viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img"}, node);
  }
  // A numeric axis pair; returns pixel mappers. xs/ys are arrays of transformed values.
  function axes(svg, xd, yd, xtype, ytype, xlabel, ylabel, xcats) {
    const px = u => M.l + (u - xd[0]) / ((xd[1] - xd[0]) || 1) * (W - M.l - M.r);
    const py = u => H - M.b - (u - yd[0]) / ((yd[1] - yd[0]) || 1) * (H - M.t - M.b);
    el("rect", {x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b,
                class: "plot-area"}, svg);
    if (xcats) {
      xcats.forEach((c, i) => text(svg, px(i), H - M.b + 16, String(c),
                                   {"text-anchor": "middle", class: "tick"}));
    } else {
      for (const u of ticksFor(xtype, xd[0], xd[1])) {
        el("line", {x1: px(u), x2: px(u), y1: M.t, y2: H - M.b, class: "grid"}, svg);
        text(svg, px(u), H - M.b + 16, fmt(inv(xtype, u)), {"text-anchor": "middle",
                                                             class: "tick"});
      }
    }
    for (const u of ticksFor(ytype, yd[0], yd[1])) {
      el("line", {x1: M.l, x2: W - M.r, y1: py(u), y2: py(u), class: "grid"}, svg);
      text(svg, M.l - 6, py(u) + 4, fmt(inv(ytype, u)), {"text-anchor": "end", class: "tick"});
    }
    text(svg, (M.l + W - M.r) / 2, H - 8, xlabel, {"text-anchor": "middle", class: "label"});
    text(svg, 14, (M.t + H - M.b) / 2, ylabel, {"text-anchor": "middle", class: "label",
         transform: "rotate(-90 14 " + (M.t + H - M.b) / 2 + ")"});
    return {px: px, py: py};
  }
  function extent(vals, pad) {
    let lo = Infinity, hi = -Infinity;
    for (const v of vals) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!isFinite(lo)) return [0, 1];
    if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; return [lo - d, hi + d]; }
    const d = (hi - lo) * (pad || 0.05);
    return [lo - d, hi + d];
  }
  // Keep the interesting range readable: values far on the bad side are drawn at the edge.
  function objectiveDomain(ys) {
    const s = ys.slice().sort((a, b) => a - b);
    if (s.length < 8) return extent(s);
    const q = p => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))];
    const q1 = q(0.25), q3 = q(0.75), iqr = (q3 - q1) || Math.abs(q3) * 0.1 || 1;
    const lo = DATA.goal === "minimize" ? s[0] : Math.max(s[0], q1 - 3 * iqr);
    const hi = DATA.goal === "minimize" ? Math.min(s[s.length - 1], q3 + 3 * iqr) : s[s.length - 1];
    return extent([lo, hi]);
  }
  function studyColor(study) {
    const i = DATA.studies.indexOf(study);
    return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
  }
  function legend(node, names, colorOf) {
    const box = document.createElement("div");
    box.className = "legend";
    for (const n of names) {
      const item = document.createElement("span");
      const sw = document.createElement("i");
      sw.style.background = colorOf(n);
      item.appendChild(sw);
      item.appendChild(document.createTextNode(n));
      box.appendChild(item);
    }
    node.appendChild(box);
  }
  function cross(svg, x, y, title) {
    const g = el("path", {d: "M" + (x - 4) + " " + (y - 4) + "l8 8m0 -8l-8 8",
                          class: "infeasible"}, svg);
    if (title) el("title", {}, g).textContent = title;
    return g;
  }

  function axisPlot(node, spec) {
    const svg = frame(node, spec.hyperparameter);
    const cat = spec.scale === "categorical";
    const feas = spec.points.filter(p => p[4]);
    const ys = feas.map(p => p[1]);
    const yd = objectiveDomain(ys);
    let xd, xOf;
    if (cat) {
      xd = [-0.5, spec.categories.length - 0.5];
      xOf = p => spec.categories.indexOf(p[0]) + ((p[3].length * 7919) % 100 - 50) / 250;
    } else {
      const lo = spec.low !== null ? fwd(spec.scale, spec.low) : Math.min(...spec.points.map(p => fwd(spec.scale, p[0])));
      const hi = spec.high !== null ? fwd(spec.scale, spec.high) : Math.max(...spec.points.map(p => fwd(spec.scale, p[0])));
      xd = extent([lo, hi], 0.03);
      xOf = p => fwd(spec.scale, p[0]);
    }
    const a = axes(svg, xd, yd, cat ? "linear" : spec.scale, "linear",
                   spec.hyperparameter + (spec.scale === "log" ? " (log)" :
                   spec.scale === "one_minus_log" ? " (1 - x, log)" : ""),
                   DATA.objective_label, cat ? spec.categories : null);
    const edge = DATA.goal === "minimize" ? M.t + 5 : H - M.b - 5;
    if (!cat && spec.buckets && spec.buckets.length) {
      // Best trial per slice of the range: the approximate isolation plot.
      let d = "";
      for (const b of spec.buckets) {
        const y = Math.min(Math.max(a.py(b[2]), M.t), H - M.b);
        d += "M" + a.px(fwd(spec.scale, b[0])).toFixed(1) + " " + y.toFixed(1) +
             "H" + a.px(fwd(spec.scale, b[1])).toFixed(1);
      }
      el("title", {}, el("path", {d: d, class: "bucket"}, svg)).textContent =
        "best trial per slice of " + spec.hyperparameter;
    }
    let marks = 0;
    const titles = spec.points.length <= 2000;
    for (const p of spec.points) {
      const x = a.px(xOf(p));
      if (!p[4]) { cross(svg, x, edge, titles ? p[3] + ": infeasible" : null); marks++; continue; }
      let y = a.py(p[1]), cls = "pt";
      if (y < M.t) { y = M.t + 2; cls = "pt clipped"; }
      if (y > H - M.b) { y = H - M.b - 2; cls = "pt clipped"; }
      const c = el("circle", {cx: x, cy: y, r: 3.2, fill: studyColor(p[2]), class: cls}, svg);
      if (titles) el("title", {}, c).textContent = p[3] + ": " + fmt(p[1]) + " at " + fmt(p[0]);
      marks++;
    }
    legend(node, DATA.studies, studyColor);
    node.setAttribute("data-rendered", String(marks));
  }

  function isolationPlot(node, spec) {
    const svg = frame(node, "Isolation: best " + DATA.objective_label + " per scientific value");
    const groups = spec.groups;
    const all = [];
    groups.forEach(g => g.values.forEach(v => all.push(v[1])));
    const yd = objectiveDomain(all);
    const a = axes(svg, [-0.5, groups.length - 0.5], yd, "linear", "linear",
                   spec.scientific.join(", ") || "study", DATA.objective_label,
                   groups.map(g => g.label));
    let marks = 0;
    const best = [];
    groups.forEach((g, i) => {
      for (const v of g.values) {
        let y = Math.min(Math.max(a.py(v[1]), M.t + 2), H - M.b - 2);
        const c = el("circle", {cx: a.px(i) + ((v[0].length * 7919) % 100 - 50) / 6, cy: y,
                                r: 2.5, class: "faint"}, svg);
        el("title", {}, c).textContent = v[0] + ": " + fmt(v[1]);
        marks++;
      }
      if (g.best) best.push([a.px(i), a.py(g.best.value), g]);
    });
    if (best.length > 1) {
      el("polyline", {points: best.map(b => b[0] + "," + b[1]).join(" "), class: "best-line"},
         svg);
    }
    for (const b of best) {
      const c = el("circle", {cx: b[0], cy: b[1], r: 6, fill: studyColor(b[2].study),
                              class: "best"}, svg);
      el("title", {}, c).textContent = b[2].best.trial + ": " + fmt(b[2].best.value) +
        " (step " + b[2].best.step + ")";
      marks++;
    }
    node.setAttribute("data-rendered", String(marks));
  }

  function linePlot(node, spec, title, colorOf) {
    const svg = frame(node, title || spec.metric);
    const xs = [], ys = [];
    for (const s of spec.series) {
      s[1].forEach(v => xs.push(v));
      s[2].forEach(v => { if (v !== null) ys.push(v); });
    }
    if (!xs.length) { node.setAttribute("data-rendered", "0"); return; }
    const a = axes(svg, extent(xs, 0.02), extent(ys), "linear", "linear", "step", spec.metric);
    let marks = 0;
    spec.series.forEach((s, i) => {
      let d = "", pen = false;
      s[1].forEach((x, j) => {
        const v = s[2][j];
        if (v === null) { pen = false; return; }
        d += (pen ? "L" : "M") + a.px(x).toFixed(1) + " " + a.py(v).toFixed(1);
        pen = true;
      });
      const color = colorOf ? colorOf(s[0], i) : PALETTE[i % PALETTE.length];
      const path = el("path", {d: d || "M0 0", class: "curve", stroke: color}, svg);
      el("title", {}, path).textContent = s[0];
      marks += s[1].length;
    });
    legend(node, spec.series.map(s => s[0]), (n) => {
      const i = spec.series.findIndex(s => s[0] === n);
      return colorOf ? colorOf(n, i) : PALETTE[i % PALETTE.length];
    });
    node.setAttribute("data-rendered", String(marks));
  }

  function boxPlot(node, boxes) {
    const svg = frame(node, "Best-of-k over resampled trials (bootstrap)");
    const ks = [], vals = [];
    // The domain covers the boxes and the good whiskers; long bad whiskers run to the edge.
    boxes.forEach(b => b.stats.forEach(s => {
      ks.push(s[0]);
      vals.push(s[2], s[4], DATA.goal === "minimize" ? s[1] : s[5]);
    }));
    if (!ks.length) { node.setAttribute("data-rendered", "0"); return; }
    const allK = Array.from(new Set(ks)).sort((x, y) => x - y);
    const a = axes(svg, [-0.5, allK.length - 0.5], extent(vals), "linear", "linear",
                   "trials in the study (k)", "best " + DATA.objective_label, allK);
    let marks = 0;
    const width = 0.7 / Math.max(1, boxes.length);
    boxes.forEach((b, bi) => {
      const color = studyColor(b.study);
      for (const s of b.stats) {
        const i = allK.indexOf(s[0]);
        const cx = a.px(i - 0.35 + width * (bi + 0.5));
        const hw = Math.max(2, (a.px(1) - a.px(0)) * width * 0.4);
        const g = el("g", {class: "box"}, svg);
        const clamp = y => Math.min(Math.max(y, M.t), H - M.b);
        el("line", {x1: cx, x2: cx, y1: clamp(a.py(s[1])), y2: clamp(a.py(s[5])),
                    stroke: color}, g);
        el("rect", {x: cx - hw, width: 2 * hw, y: Math.min(a.py(s[2]), a.py(s[4])),
                    height: Math.max(1, Math.abs(a.py(s[2]) - a.py(s[4]))), stroke: color,
                    fill: color, "fill-opacity": 0.25}, g);
        el("line", {x1: cx - hw, x2: cx + hw, y1: a.py(s[3]), y2: a.py(s[3]), stroke: color,
                    "stroke-width": 2}, g);
        el("title", {}, g).textContent = b.study + ", k=" + s[0] + ": median " + fmt(s[3]) +
          ", IQR " + fmt(s[2]) + "-" + fmt(s[4]);
        marks++;
      }
    });
    legend(node, boxes.map(b => b.study), studyColor);
    node.setAttribute("data-rendered", String(marks));
  }

  function histogram(node, spec) {
    // spec.edges (bins + 1) and spec.counts (bins) are binned by the report; spec.log: the
    // edges are log-spaced and the x axis is logarithmic.
    const svg = frame(node, spec.title);
    const counts = spec.counts, log = !!spec.log;
    if (!counts.length) { node.setAttribute("data-rendered", "0"); return; }
    const tx = x => log ? Math.log10(x) : x;
    const e = spec.edges.map(tx);
    const a = axes(svg, [e[0], e[e.length - 1]], [0, Math.max(...counts) * 1.05],
                   log ? "log" : "linear", "linear", spec.xlabel, spec.ylabel || "count");
    counts.forEach((c, i) => el("rect", {x: a.px(e[i]), y: a.py(c),
      width: Math.max(1, a.px(e[i + 1]) - a.px(e[i]) - 1), height: a.py(0) - a.py(c),
      class: "bar"}, svg));
    if (spec.marker !== null && spec.marker !== undefined) {
      const m = tx(spec.marker);
      el("line", {x1: a.px(m), x2: a.px(m), y1: M.t, y2: H - M.b, class: "marker"}, svg);
    }
    node.setAttribute("data-rendered", String(counts.length));
  }

  // Trial variance: each seed (grey), the mean with a +-1 sd error bar per configuration.
  function variancePlot(node, spec) {
    const svg = frame(node, "Trial variance: " + spec.label + " over seeds (mean \u00b1 sd)");
    const groups = spec.groups, all = [];
    groups.forEach(g => { g.values.forEach(v => all.push(v));
      if (g.sd !== null) all.push(g.mean - g.sd, g.mean + g.sd); });
    const a = axes(svg, [-0.5, groups.length - 0.5], extent(all), "linear", "linear",
                   "configuration", spec.label, groups.map(g => g.study));
    let marks = 0;
    groups.forEach((g, i) => {
      g.values.forEach((v, j) => {
        const c = el("circle", {cx: a.px(i) + ((j * 7919) % 100 - 50) / 8, cy: a.py(v), r: 2.5,
                                class: "faint"}, svg);
        el("title", {}, c).textContent = g.study + ": " + fmt(v);
        marks++;
      });
      if (g.mean === null) return;
      if (g.sd !== null) {
        el("line", {x1: a.px(i), x2: a.px(i), y1: a.py(g.mean - g.sd), y2: a.py(g.mean + g.sd),
                    stroke: "#1d2430", "stroke-width": 1.5}, svg);
      }
      const c = el("circle", {cx: a.px(i), cy: a.py(g.mean), r: 5, fill: PALETTE[i % 10],
                              class: "best"}, svg);
      el("title", {}, c).textContent = g.study + ": mean " + fmt(g.mean) +
        (g.sd !== null ? " \u00b1 " + fmt(g.sd) : "") + " (n=" + g.values.length + ")";
      marks++;
    });
    node.setAttribute("data-rendered", String(marks));
  }

  // A procedure's evidence (report/procedures.py): series of (x, y) on linear, log or log2
  // axes, each a line or points (with an optional low-high bar), dashed (lines) or crossed
  // (points) when unstable; red reference lines at an x or a y with their label.
  function xyPlot(node, spec) {
    const svg = frame(node, spec.title);
    const xt = spec.xscale, yt = spec.yscale, xs = [], ys = [];
    spec.series.forEach(s => {
      s.x.forEach(v => xs.push(fwd(xt, v)));
      s.y.forEach((v, j) => { ys.push(fwd(yt, v));
        if (s.low) ys.push(fwd(yt, s.low[j]), fwd(yt, s.high[j])); });
    });
    spec.vlines.forEach(l => xs.push(fwd(xt, l.x)));
    spec.hlines.forEach(l => ys.push(fwd(yt, l.y)));
    const a = axes(svg, extent(xs, 0.04), extent(ys), xt, yt, spec.xlabel, spec.ylabel);
    spec.vlines.forEach(l => {
      const x = a.px(fwd(xt, l.x));
      el("title", {}, el("line", {x1: x, x2: x, y1: M.t, y2: H - M.b, class: "marker"}, svg))
        .textContent = l.label + ": " + fmt(l.x);
      const right = x > (M.l + W - M.r) / 2;  // the label on the side with room
      text(svg, right ? x - 3 : x + 3, M.t + 11, l.label,
           {class: "tick", "text-anchor": right ? "end" : "start"});
    });
    spec.hlines.forEach(l => {
      const y = a.py(fwd(yt, l.y));
      el("title", {}, el("line", {x1: M.l, x2: W - M.r, y1: y, y2: y, class: "marker"}, svg))
        .textContent = l.label + ": " + fmt(l.y);
      text(svg, W - M.r - 3, y - 3, l.label, {class: "tick", "text-anchor": "end"});
    });
    let marks = 0;
    const color = i => PALETTE[i % PALETTE.length];
    spec.series.forEach((s, i) => {
      const pts = s.x.map((x, j) => [a.px(fwd(xt, x)), a.py(fwd(yt, s.y[j]))]);
      if (s.low) {
        s.x.forEach((x, j) => el("line", {x1: pts[j][0], x2: pts[j][0],
          y1: a.py(fwd(yt, s.low[j])), y2: a.py(fwd(yt, s.high[j])), stroke: color(i),
          "stroke-width": 1.5}, svg));
      }
      if (s.points) {
        pts.forEach((p, j) => {
          const m = s.unstable ? cross(svg, p[0], p[1], null)
            : el("circle", {cx: p[0], cy: p[1], r: 3.5, fill: color(i), class: "pt"}, svg);
          el("title", {}, m).textContent = s.name + ": " + fmt(s.y[j]) + " at " + fmt(s.x[j]);
        });
      } else {
        const d = pts.map((p, j) => (j ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1));
        const attrs = {d: d.join(""), class: "curve", stroke: color(i)};
        if (s.unstable || s.dashed) attrs["stroke-dasharray"] = "5 3";
        el("title", {}, el("path", attrs, svg)).textContent = s.name;
        const last = pts[pts.length - 1];  // where an unstable run was last seen; a lone point
        if (last && s.unstable) cross(svg, last[0], last[1], s.name + ": last finite value");
        else if (pts.length === 1) el("circle", {cx: last[0], cy: last[1], r: 3, fill: color(i)}, svg);
      }
      marks += pts.length;
    });
    legend(node, spec.series.map(s => s.name),
           n => color(spec.series.findIndex(s => s.name === n)));
    node.setAttribute("data-rendered", String(marks));
  }

  // Exploitation: each finished trial (dot; infeasible: X at the edge) and the best so far
  // (steps) against trial index, per series; the designer's quasi-random start shaded.
  function bestSoFarPlot(node, spec) {
    const svg = frame(node, "Best " + spec.label + " so far");
    const xs = [], ys = [];
    spec.series.forEach(s => s.points.forEach(p => { xs.push(p[0]);
      if (p[1] !== null) ys.push(p[1]); }));
    const xd = extent(xs.concat([0]), 0.03), yd = objectiveDomain(ys);
    const a = axes(svg, xd, yd, "linear", "linear", "trial index", spec.label);
    const colorOf = n => { const s = spec.series.find(t => t.name === n);
      return s && s.exploration ? "#7f7f7f" : studyColor(n); };
    if (spec.initial) {
      const x1 = Math.min(a.px(spec.initial - 0.5), W - M.r);
      el("title", {}, el("rect", {x: M.l, y: M.t, width: Math.max(0, x1 - M.l),
        height: H - M.t - M.b, class: "phase", fill: "#7f7f7f", "fill-opacity": 0.12}, svg)
      ).textContent = "the designer's quasi-random start: trials 0-" + (spec.initial - 1);
      // Away from the edge where infeasible trials are drawn.
      text(svg, M.l + 4, DATA.goal === "minimize" ? H - M.b - 6 : M.t + 14, "quasi-random",
           {class: "tick"});
    }
    const clamp = y => Math.min(Math.max(y, M.t + 2), H - M.b - 2);
    const edge = DATA.goal === "minimize" ? M.t + 5 : H - M.b - 5;
    let marks = 0;
    for (const s of spec.series) {
      const color = colorOf(s.name);
      for (const p of s.points) {
        if (p[1] === null) cross(svg, a.px(p[0]), edge, s.name + " #" + p[0] + ": infeasible");
        else el("title", {}, el("circle", {cx: a.px(p[0]), cy: clamp(a.py(p[1])), r: 2.5,
          fill: color, class: "pt"}, svg)).textContent = s.name + " #" + p[0] + ": " + fmt(p[1]);
        marks++;
      }
      let d = "";
      s.best.forEach((b, j) => { d += (j ? "H" + a.px(b[0]).toFixed(1) + "V" : "M" +
        a.px(b[0]).toFixed(1) + " ") + clamp(a.py(b[1])).toFixed(1); });
      if (d) el("title", {}, el("path", {d: d, class: "curve best-so-far", stroke: color}, svg)
        ).textContent = s.name + ": best so far";
    }
    legend(node, spec.series.map(s => s.name), colorOf);
    node.setAttribute("data-rendered", String(marks));
  }

  function renderAll() {
    document.querySelectorAll("[data-plot]").forEach(node => {
      const kind = node.getAttribute("data-plot");
      const i = Number(node.getAttribute("data-index") || 0);
      try {
        if (kind === "axis") axisPlot(node, DATA.axis[i]);
        else if (kind === "isolation") isolationPlot(node, DATA.isolation);
        else if (kind === "curve") {
          const study = DATA.curves[Number(node.getAttribute("data-study"))];
          linePlot(node, study.plots[i], study.study + ": " + study.plots[i].metric);
        } else if (kind === "bootstrap") boxPlot(node, DATA.bootstrap);
        else if (kind === "variance") variancePlot(node, JSON.parse(node.getAttribute("data-spec")));
        else if (kind === "grad-norm-hist") histogram(node, DATA.grad_norm[i].histogram);
        else if (kind === "xy") xyPlot(node, DATA.plots[i]);
        else if (kind === "best-so-far") bestSoFarPlot(node, JSON.parse(node.getAttribute("data-spec")));
      } catch (err) {
        node.textContent = "could not draw this plot: " + err;
        node.setAttribute("data-rendered", "error");
        throw err;
      }
    });
    const picker = document.getElementById("trial-picker");
    if (picker) {
      picker.addEventListener("change", () => showTrial(picker.value));
    }
  }

  // The curves of trials past the best ones are in script files beside the page (a script
  // tag loads on file://, where fetch is refused); each files its trials under its number.
  const shardWaits = {};
  function loadShard(n, done) {
    const loaded = (window.tunebookShards || {})[n];
    if (loaded) { done(loaded); return; }
    if (shardWaits[n]) { shardWaits[n].push(done); return; }
    shardWaits[n] = [done];
    const tag = document.createElement("script");
    tag.src = DATA.shards[n];
    tag.onload = () => { const w = shardWaits[n]; delete shardWaits[n];
                         w.forEach(f => f((window.tunebookShards || {})[n] || null)); };
    tag.onerror = () => { const w = shardWaits[n]; delete shardWaits[n];
                          tag.remove(); w.forEach(f => f(null)); };
    document.head.appendChild(tag);
  }

  function showTrial(label) {
    const out = document.getElementById("trial-curves");
    out.innerHTML = "";
    out.removeAttribute("data-rendered");
    if (DATA.trials[label]) { drawTrial(out, label, DATA.trials[label]); return; }
    const option = Array.from(document.querySelectorAll("#trial-picker option"))
      .find(o => o.value === label);
    const n = option ? option.getAttribute("data-shard") : null;
    if (n === null || !DATA.shards || DATA.shards[Number(n)] === undefined) return;
    out.textContent = "loading " + DATA.shards[Number(n)] + " ...";
    loadShard(Number(n), shard => {
      if (document.getElementById("trial-picker").value !== label) return;
      out.innerHTML = "";
      if (shard && shard[label]) { drawTrial(out, label, shard[label]); return; }
      out.textContent = "The curves of " + label + " are in " + DATA.shards[Number(n)] +
        ", beside the page that `tunebook report` writes; it could not be read here (a page " +
        "shown without its folder, or rewritten since it was opened: reload it).";
      out.setAttribute("data-rendered", "missing");
    });
  }

  function drawTrial(out, label, curves) {
    Object.keys(curves).forEach(metric => {
      const div = document.createElement("div");
      div.className = "plot";
      out.appendChild(div);
      linePlot(div, {metric: metric, series: [[label, curves[metric][0], curves[metric][1]]]},
               label + ": " + metric);
    });
    out.setAttribute("data-rendered", String(Object.keys(curves).length));
  }

  window.tunebookShowTrial = showTrial;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", renderAll);
  else renderAll();
})();
