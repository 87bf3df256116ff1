// The console works without this; with it, live parts refresh, long
// actions say they are under way, and a vserver's page draws its charts.

// Each element with data-refresh takes the HTML its URL gives, every 2 s
// while the page is shown.
for (const part of document.querySelectorAll("[data-refresh]")) {
  setInterval(async () => {
    if (document.hidden) return;
    const answer = await fetch(part.dataset.refresh, { credentials: "same-origin" });
    if (answer.ok) part.innerHTML = await answer.text();
  }, 2000);
}

// A form that takes a while (a move, a drain) says so on its button.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.dataset.busy) return;
  const button = form.querySelector("button");
  if (button) {
    button.disabled = true;
    button.textContent = form.dataset.busy;
  }
});

// A vserver's calls/s, bytes/s and mean latency, from its counters read
// every 2 s by the node serving it (they continue across moves).
const charts = document.querySelector("[data-counters]");
if (charts) {
  const series = { calls: [], bytes: [], latency: [] };
  let last = null;
  const draw = (name, values, unit) => {
    const svg = charts.querySelector(`[data-series=${name}] svg`);
    const label = charts.querySelector(`[data-series=${name}] output`);
    const max = Math.max(1e-9, ...values);
    const step = 300 / Math.max(1, values.length - 1);
    const points = values.map((v, i) => `${i * step},${58 - (v / max) * 54}`).join(" ");
    svg.querySelector("polyline").setAttribute("points", points);
    const now = values.length ? values[values.length - 1] : 0;
    label.textContent = `${now.toFixed(now < 10 ? 2 : 0)} ${unit}`;
  };
  const read = async () => {
    if (document.hidden) return;
    const answer = await fetch(charts.dataset.counters, { credentials: "same-origin" });
    if (!answer.ok) return;
    const now = await answer.json();
    if (last && now.at_ms > last.at_ms) {
      const seconds = (now.at_ms - last.at_ms) / 1000;
      const calls = Math.max(0, now.calls - last.calls);
      const push = (list, v) => { list.push(v); if (list.length > 60) list.shift(); };
      push(series.calls, calls / seconds);
      push(series.bytes, Math.max(0, now.bytes_in + now.bytes_out - last.bytes_in - last.bytes_out) / seconds);
      push(series.latency, calls ? ((now.latency_sum_seconds - last.latency_sum_seconds) / calls) * 1000 : 0);
      draw("calls", series.calls, "calls/s");
      draw("bytes", series.bytes, "bytes/s");
      draw("latency", series.latency, "ms per call");
    }
    charts.querySelector(".served-by").textContent = now.node;
    last = now;
  };
  read();
  setInterval(read, 2000);
}
