// obsgap report: builds every element from the JSON data block with textContent (never innerHTML),
// pages long lists, and draws charts only when their finding is opened.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("obsgap-data").textContent);
  const PAGE = 50;
  const SEV = { critical: 0, warning: 1, info: 2 };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    return node;
  }
  function safeUrl(u) { return typeof u === "string" && /^https:\/\/[a-z0-9.-]+\//i.test(u) ? u : null; }
  // A value of an evidence table as a person reads it: counts with thousands separators, but ports and codes as
  // written (9000, not 9,000); lists joined, mappings as "key: value" pairs, never raw JSON.
  function fmt(v, key) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") {
      if (Number.isInteger(v) && key && /(^|_)(port|ports|code|status)s?$/.test(key)) return String(v);
      return Number.isInteger(v) ? v.toLocaleString("en-US") : v.toLocaleString("en-US", { maximumFractionDigits: 4 });
    }
    if (Array.isArray(v)) return v.length ? v.map((x) => fmt(x, key)).join(", ") : "none";
    if (typeof v === "object") return Object.entries(v).map(([k, x]) => k + ": " + fmt(x, k)).join(", ") || "none";
    return String(v);
  }
  // Plotly renders a pseudo-HTML subset in text: escape it, and `$` so no name is read as LaTeX.
  function esc(s) {
    return String(s).replace(/[&<>"'$]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "$": "&#36;" })[c]);
  }
  const LAYOUT = { margin: { l: 10, r: 10, t: 12, b: 10 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, Segoe UI, sans-serif", size: 12 } };
  function lay(extra) { return Object.assign({}, LAYOUT, extra, { xaxis: Object.assign({ automargin: true }, extra.xaxis || {}), yaxis: Object.assign({ automargin: true }, extra.yaxis || {}) }); }
  // A finding's charts come typed from the report model (obsgap/charts.py, drawn by each check): bars or lines, and notes that say in
  // words what an empty series would only show as a missing line.
  // titles are HTML captions above the chart (they wrap on a phone; an SVG title would be cut)
  function figure(c) {
    const title = { text: "" };
    if (c.kind === "bars") {
      return { data: [{ type: "bar", x: c.labels.map(esc), y: c.values, marker: { color: c.colors },
        hovertemplate: "%{x}: %{y:,.0f} " + esc(c.value_name) + "<extra></extra>" }],
        layout: lay({ height: 260, title: title, yaxis: countAxis(c.values, true) }) };
    }
    const when = (ms) => new Date(ms).toISOString().slice(0, 16).replace("T", " ");
    return { data: c.lines.map((l) => ({ type: "scatter", mode: "lines+markers", name: esc(l.name), line: { color: l.color },
      x: l.points.map((p) => when(p[0])), y: l.points.map((p) => p[1]), hovertemplate: "%{x}: %{y:,} " + esc(l.name) + "<extra></extra>" })),
      layout: lay({ height: 240, title: title, showlegend: true, legend: { orientation: "h", y: -0.3 },
        yaxis: countAxis(c.lines.flatMap((l) => l.points.map((p) => p[1])), false) }) };
  }
  // A count never reads 1.5 or -0.27, nor 240, 240, 241: whole ticks, one by one where the values span little
  // (a flat line's axis spans one either side of it), and never below zero
  function countAxis(values, fromZero) {
    const nums = values.filter((v) => typeof v === "number");
    if (!nums.length || !nums.every(Number.isInteger)) return { rangemode: "nonnegative" };
    const axis = { rangemode: "nonnegative", tickformat: ",d" };
    if (Math.max(...nums) - (fromZero ? 0 : Math.min(...nums)) <= 5) axis.dtick = 1;
    return axis;
  }
  const sized = typeof ResizeObserver === "function" ? new ResizeObserver((entries) => {
    for (const e of entries) if (window.Plotly && e.target.classList.contains("js-plotly-plot")) window.Plotly.Plots.resize(e.target);
  }) : null;
  function plot(target, fig) {
    if (!window.Plotly || !fig) return;
    const cfg = { displaylogo: false, responsive: true, displayModeBar: false };
    const layout = Object.assign({}, fig.layout || {}, { autosize: true });
    delete layout.width;
    // the box holds the chart's height, so a resize (which sizes the chart to its box) keeps it
    if (layout.height) target.style.height = layout.height + "px";
    window.Plotly.newPlot(target, fig.data || [], layout, cfg);
    if (sized) sized.observe(target);
  }
  function drawCharts(box, charts) {
    // every box first, so the grid has its final columns before Plotly measures any of them
    const boxes = charts.map((c) => {
      const cell = el("figure", { class: "chart-cell" });
      const d = el("div", { class: "chart" });
      cell.append(el("figcaption", { class: "chart-title", text: c.title }), d);
      for (const n of c.notes || []) cell.append(el("figcaption", { class: "chart-note", text: n }));
      box.append(cell);
      return d;
    });
    charts.forEach((c, i) => plot(boxes[i], figure(c)));
  }
  function pager(container, total, page, onPage) {
    container.replaceChildren();
    const pages = Math.max(1, Math.ceil(total / PAGE));
    if (pages <= 1) { container.append(total + " rows"); return; }
    const prev = el("button", { type: "button", text: "‹ prev" });
    const next = el("button", { type: "button", text: "next ›" });
    prev.disabled = page === 0; next.disabled = page >= pages - 1;
    prev.addEventListener("click", () => onPage(page - 1));
    next.addEventListener("click", () => onPage(page + 1));
    container.append(prev, " page " + (page + 1) + " of " + pages + " (" + total + " rows) ", next);
  }

  // --- findings -------------------------------------------------------------------------------------
  const list = document.getElementById("finding-list");
  const controls = ["f-severity", "f-check", "f-namespace", "f-group", "f-text", "f-sort"].map((id) => document.getElementById(id));
  const [fSev, fCheck, fNs, fGroup, fText, fSort] = controls;
  const where = (f) => [f.namespace, f.service || f.workload || f.job].filter((x) => x).join("/");
  const impact = (f) => DATA.impact[f.id] || 0;  // requests affected, as the report model ranks them
  const ORDER = {
    severity: (a, b) => SEV[a.severity] - SEV[b.severity] || impact(b) - impact(a),
    impact: (a, b) => impact(b) - impact(a) || SEV[a.severity] - SEV[b.severity],
    service: (a, b) => where(a).localeCompare(where(b)) || SEV[a.severity] - SEV[b.severity],
    check: (a, b) => a.check.localeCompare(b.check) || SEV[a.severity] - SEV[b.severity],
  };
  const uniq = (xs) => Array.from(new Set(xs.filter((x) => x))).sort();
  for (const c of uniq(DATA.findings.map((f) => f.check))) fCheck.append(el("option", { value: c, text: c }));
  for (const n of uniq(DATA.findings.map((f) => f.namespace))) fNs.append(el("option", { value: n, text: n }));
  let findingPage = 0;

  function findingCard(f) {
    const card = el("details", { class: "finding sev-" + f.severity, id: "finding-" + f.id });
    const summary = el("summary", {},
      el("span", { class: "badge sev-" + f.severity, text: f.severity }),
      f.change ? el("span", { class: "badge " + f.change, text: f.change }) : null,
      el("span", { class: "check", text: f.check }),
      el("span", { class: "title", text: f.title }),
      el("span", { class: "where", text: where(f) + (f.istio_code ? " · " + f.istio_code : "") }));
    card.append(summary);
    const body = el("div", { class: "finding-body" });
    const root = f.root && f.root !== f.id ? DATA.findings.find((g) => g.id === f.root) : null;
    if (root) {  // one cause explains this finding: its fix is the root's
      body.append(el("p", { class: "explained" }, "Explained by ",
        el("a", { href: "#finding-" + root.id, text: root.check + ": " + root.title }), " — fix that first."));
    }
    body.append(el("p", { text: f.detail }));
    const facts = el("table");
    const rows = [["cause", f.cause], ["resource", f.resource], ["port", f.port], ["metric", f.metric], ["job", f.job]];
    for (const [k, v] of Object.entries(f.evidence || {})) {
      if (k === "cumulative" || k === "buckets") continue;
      rows.push([k, v]);
    }
    for (const [k, v] of rows) if (v !== null && v !== undefined && v !== "") facts.append(el("tr", {}, el("td", { text: String(k).replace(/_/g, "_\u200b") }), el("td", { text: fmt(v, String(k)) })));
    body.append(el("div", { class: "scroll" }, facts));
    if (f.suggestion) {
      const fix = el("p", {}, el("strong", { text: "Fix: " }), f.suggestion.text + " ");
      const url = safeUrl(f.suggestion.doc_url);
      if (url) fix.append(el("a", { href: url, rel: "noopener noreferrer", target: "_blank", text: "Istio docs" }));
      body.append(fix);
      for (const snip of DATA.snippets[f.id] || []) {
        const pre = el("pre", { class: "config" }, el("code", { text: snip.text }));
        const copy = el("button", { type: "button", class: "copy", text: "copy", "aria-label": "copy " + snip.label });
        copy.addEventListener("click", () => {
          const done = () => { copy.textContent = "copied"; setTimeout(() => { copy.textContent = "copy"; }, 1200); };
          if (navigator.clipboard) navigator.clipboard.writeText(snip.text).then(done, () => {});
        });
        body.append(el("div", { class: "snippet" }, el("div", { class: "snippet-head" }, el("span", { text: snip.label }), copy), pre));
      }
    }
    const charts = el("div", { class: "charts" });
    body.append(charts);
    card.append(body);
    card.addEventListener("toggle", () => {
      if (card.open && !charts.dataset.drawn) {
        charts.dataset.drawn = "1";
        drawCharts(charts, DATA.charts[f.id] || []);
      }
    });
    return card;
  }

  function renderFindings() {
    const q = fText.value.trim().toLowerCase();
    let items = DATA.findings.filter((f) =>
      (!fSev.value || f.severity === fSev.value) && (!fCheck.value || f.check === fCheck.value) &&
      (!fNs.value || f.namespace === fNs.value) &&
      (!q || [f.title, f.service, f.workload, f.cause, f.check, f.resource, f.job].join(" ").toLowerCase().includes(q)));
    const group = fGroup.value;
    const key = (f) => group === "service" ? [f.namespace, f.service || f.workload || f.job].filter((x) => x).join("/") || "(mesh-wide)" : f.check;
    const order = ORDER[fSort.value] || ORDER.severity;
    items = items.slice().sort((a, b) => group !== "none" && key(a) !== key(b) ? (key(a) < key(b) ? -1 : 1) : order(a, b));
    const pages = Math.max(1, Math.ceil(items.length / PAGE));
    findingPage = Math.min(findingPage, pages - 1);
    list.replaceChildren();
    let last = null;
    for (const f of items.slice(findingPage * PAGE, findingPage * PAGE + PAGE)) {
      if (group !== "none" && key(f) !== last) { last = key(f); list.append(el("div", { class: "group-head", text: last })); }
      list.append(findingCard(f));
    }
    if (!items.length) list.append(el("p", { class: "hint", text: DATA.findings.length ? "No finding matches the filters." : DATA.empty_means }));
    pager(document.getElementById("finding-pager"), items.length, findingPage, (p) => { findingPage = p; renderFindings(); });
  }
  for (const c of controls) c.addEventListener("input", () => { findingPage = 0; renderFindings(); });
  renderFindings();
  // #expand opens every finding on the page (for printing the report for a review meeting)
  if (location.hash === "#expand") for (const d of list.querySelectorAll("details.finding")) d.open = true;
  // a link to #finding-<id> (the first screen, summary.md, a chat) opens that finding, on load or in the page
  function openFromHash() {
    const wanted = /^#finding-[0-9a-f]{16}$/.test(location.hash) ? location.hash.slice(9) : null;
    if (!wanted) return;
    let card = document.getElementById("finding-" + wanted);
    if (!card) {
      const idx = DATA.findings.findIndex((f) => f.id === wanted);
      if (idx < 0) return;
      for (const c of controls) if (c.tagName === "SELECT" && c !== fSort && c !== fGroup) c.value = "";
      fText.value = ""; fGroup.value = "none"; fSort.value = "severity";
      findingPage = 0;
      renderFindings();
      card = document.getElementById("finding-" + wanted);
      if (!card) {  // on a later page of the default order
        const order = DATA.findings.slice().sort(ORDER.severity);
        findingPage = Math.floor(order.findIndex((f) => f.id === wanted) / PAGE);
        renderFindings();
        card = document.getElementById("finding-" + wanted);
      }
    }
    if (card) { card.open = true; card.scrollIntoView(); }
  }
  window.addEventListener("hashchange", openFromHash);
  openFromHash();

  // --- coverage table ---------------------------------------------------------------------------------
  const covBody = document.querySelector("#coverage-table tbody");
  const covFilter = document.getElementById("coverage-filter");
  let covSort = { key: "ratio", dir: 1 }, covPage = 0;
  function renderCoverage() {
    const q = covFilter.value.trim().toLowerCase();
    const rows = DATA.coverage.filter((r) => !q || (r.namespace + "/" + r.service).toLowerCase().includes(q));
    rows.sort((a, b) => {
      const x = a[covSort.key], y = b[covSort.key];
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * covSort.dir;
    });
    covBody.replaceChildren();
    for (const r of rows.slice(covPage * PAGE, covPage * PAGE + PAGE)) {
      const ratio = r.ratio !== null ? (Math.min(r.ratio, 9.99) * 100).toFixed(1) + "%" :
        r.comparable === false && r.observed_requests !== null && r.mesh_requests !== null ? "not comparable" : "unknown";
      const basis = (r.observed_by || "no witness") + (r.basis ? " (" + r.basis + ")" : "") +
        (r.logs_cover && !(r.basis || "").includes(r.logs_cover) ? "; " + r.logs_cover : "") +
        (r.reason ? "; " + r.reason : "");
      const unit = r.unit === "connections" ? " conn." : "";
      const count = (v) => (v === null || v === undefined ? "not measured" : fmt(v) + unit);
      const tr = el("tr", {}, el("td", { text: r.namespace }), el("td", { text: r.service }),
        el("td", { class: "num", text: count(r.observed_requests) }), el("td", { class: "num", text: count(r.mesh_requests) }),
        el("td", { class: "num", text: ratio }), el("td", { text: basis }));
      if (r.ratio !== null && r.ratio < 0.95) tr.style.color = r.ratio < 0.5 ? "#c0392b" : "#9a6700";
      covBody.append(tr);
    }
    pager(document.getElementById("coverage-pager"), rows.length, covPage, (p) => { covPage = p; renderCoverage(); });
  }
  for (const th of document.querySelectorAll("#coverage-table th[data-key]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      covSort = { key, dir: covSort.key === key ? -covSort.dir : 1 };
      renderCoverage();
    });
  }
  covFilter.addEventListener("input", () => { covPage = 0; renderCoverage(); });
  renderCoverage();

  // --- name contract ----------------------------------------------------------------------------------
  const conBody = document.querySelector("#contract-table tbody");
  const conBroken = document.getElementById("contract-broken");
  const conFilter = document.getElementById("contract-filter");
  let conPage = 0;
  function renderContract() {
    const q = conFilter.value.trim().toLowerCase();
    const rows = DATA.contract.filter((r) => (!conBroken.checked || r.broken > 0) &&
      (!q || JSON.stringify(r).toLowerCase().includes(q)));
    conBody.replaceChildren();
    for (const r of rows.slice(conPage * PAGE, conPage * PAGE + PAGE)) {
      const names = el("td");
      for (const link of r.links) {
        const first = (link.findings || []).find((id) => /^[0-9a-f]{16}$/.test(id));
        const chip = el(first ? "a" : "span", { class: "chip" + (link.broken ? " broken" : ""), title: link.note || link.how || "" },
          el("span", { class: "kind", text: link.kind }), link.name + (link.how ? " · " + link.how : "") +
            (link.note && !(link.how || "").includes(link.note) ? " · " + link.note : ""));
        if (first) chip.setAttribute("href", "#finding-" + first);
        names.append(chip);
      }
      conBody.append(el("tr", {}, el("td", {}, el("strong", { text: r.service }), el("div", { class: "hint", text: r.fqdn })), names));
    }
    if (!rows.length) conBody.append(el("tr", {}, el("td", { colspan: "2", class: "hint", text: DATA.contract.length ? "No broken links." : DATA.contract_empty })));
    pager(document.getElementById("contract-pager"), rows.length, conPage, (p) => { conPage = p; renderContract(); });
  }
  conBroken.addEventListener("change", () => { conPage = 0; renderContract(); });
  conFilter.addEventListener("input", () => { conPage = 0; renderContract(); });
  renderContract();

  // --- charts -----------------------------------------------------------------------------------------
  plot(document.getElementById("coverage-chart"), DATA.coverage_chart);
  const trend = document.getElementById("trend-chart");
  if (trend) plot(trend, DATA.trend_chart);
  document.body.dataset.rendered = "1";
})();
