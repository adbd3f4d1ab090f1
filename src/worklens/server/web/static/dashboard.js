/* WorkLens dashboard: the little script the server-rendered pages need.
 *
 * - an htmx extension "json-body": the form's fields as a JSON body (number
 *   inputs as numbers, empty ones as null), for the JSON API (also for DELETE);
 * - feedback for admin actions ([data-actions] boxes): what happened, then a
 *   reload or another page (data-then="reload" | "go:/path" | "show");
 * - the host health charts of a device page (uPlot), with their range picker.
 *
 * Text from the server is only ever set with textContent: never parsed as HTML.
 */
(function () {
  "use strict";

  if (window.htmx) {
    htmx.defineExtension("json-body", {
      onEvent: function (name, evt) {
        if (name === "htmx:configRequest") {
          evt.detail.useUrlParams = false; // DELETE too: the body carries the fields
          evt.detail.headers["Content-Type"] = "application/json";
        }
        return true;
      },
      encodeParameters: function (xhr, parameters, elt) {
        xhr.overrideMimeType("text/plain");
        const out = {};
        for (const [key, value] of parameters.entries()) {
          const input = elt.querySelector('[name="' + CSS.escape(key) + '"]');
          if (input && input.type === "number") {
            out[key] = value === "" ? null : Number(value); // empty: clear the setting
          } else {
            out[key] = value;
          }
        }
        return JSON.stringify(out);
      },
    });
  }

  function errorOf(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (body && body.error) return body.error;
    } catch (e) {
      /* not JSON: an HTML error page or nothing */
    }
    return "HTTP " + xhr.status;
  }

  document.addEventListener("htmx:afterRequest", function (ev) {
    const elt = ev.detail.elt;
    const box = elt && elt.closest ? elt.closest("[data-actions]") : null;
    if (!box) return;
    const out = box.querySelector("[data-status]");
    const xhr = ev.detail.xhr;
    if (!out || !xhr) return;
    if (!ev.detail.successful) {
      out.className = "error";
      out.textContent = "Failed: " + errorOf(xhr);
      return;
    }
    out.className = "ok";
    let message = elt.getAttribute("data-done") || "Done.";
    const then = elt.getAttribute("data-then") || "";
    if (then === "show" && xhr.responseText) {
      try {
        const body = JSON.parse(xhr.responseText);
        if (body && body.already_pending) message += " (It was already pending.)";
      } catch (e) {
        /* nothing more to show */
      }
    }
    out.textContent = message;
    if (then === "reload") setTimeout(function () { location.reload(); }, 700);
    if (then.startsWith("go:")) setTimeout(function () { location.assign(then.slice(3)); }, 700);
  });

  // --- host health charts --------------------------------------------------------

  const CHARTS = [
    { id: "cpu", label: "CPU %", max: 100, series: [["cpu_percent", "CPU", "#1f77b4"]] },
    {
      id: "mem",
      label: "Memory %",
      max: 100,
      series: [["mem_percent", "Memory", "#2ca02c"], ["swap_percent", "Swap", "#ff7f0e"]],
    },
    { id: "disk", label: "Disk %", max: 100, series: [["disk_percent", "Disk", "#9467bd"]] },
    {
      id: "load",
      label: "Load",
      max: null,
      series: [["load1", "1 min", "#d62728"], ["load5", "5 min", "#8c564b"], ["load15", "15 min", "#17becf"]],
    },
  ];

  function hostCharts(root) {
    const url = root.getAttribute("data-url");
    const tz = root.getAttribute("data-tz") || "UTC";
    const status = root.querySelector("[data-chart-status]");
    const plots = {};
    // What the charts show; "follow" when the range ends now, so that samples
    // arriving over the live socket are appended (and the oldest dropped).
    let shown = null;

    function draw(data) {
      for (const spec of CHARTS) {
        const el = root.querySelector('[data-chart="' + spec.id + '"]');
        if (!el) continue;
        if (plots[spec.id]) plots[spec.id].destroy();
        const columns = [data.t].concat(spec.series.map(function (s) { return data[s[0]] || []; }));
        const opts = {
          width: Math.max(300, el.clientWidth || 600),
          height: 180,
          tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), tz); },
          scales: spec.max ? { y: { range: [0, spec.max] } } : {},
          series: [{}].concat(spec.series.map(function (s) {
            return { label: s[1], stroke: s[2], width: 1.5, spanGaps: false };
          })),
          axes: [{}, { label: spec.label }],
        };
        plots[spec.id] = new uPlot(opts, columns, el);
      }
    }

    function follow(sample) {
      if (!shown || !shown.follow || !shown.data.t.length) return;
      const data = shown.data;
      if (sample.t <= data.t[data.t.length - 1]) return;
      data.t.push(sample.t);
      for (const key of Object.keys(data)) {
        if (Array.isArray(data[key]) && key !== "t") data[key].push(sample[key] ?? null);
      }
      const oldest = sample.t - shown.seconds;
      while (data.t.length && data.t[0] < oldest) {
        for (const key of Object.keys(data)) if (Array.isArray(data[key])) data[key].shift();
      }
      for (const spec of CHARTS) {
        const plot = plots[spec.id];
        if (plot) plot.setData([data.t].concat(spec.series.map(function (s) { return data[s[0]] || []; })));
      }
      root.setAttribute("data-points", String(data.t.length));
    }

    // The live socket replaces #device-health-N with the device's newest sample.
    document.body.addEventListener("htmx:wsAfterMessage", function () {
      const el = document.querySelector("[id^=device-health-]");
      if (el && el.dataset.sample) follow(JSON.parse(el.dataset.sample));
    });

    async function load(start, end) {
      status.className = "muted";
      status.textContent = "Loading…";
      root.setAttribute("data-loaded", "false");
      const q = new URLSearchParams({ start: start.toISOString(), end: end.toISOString() });
      let data;
      try {
        const r = await fetch(url + "?" + q, { credentials: "same-origin", headers: { Accept: "application/json" } });
        data = await r.json();
        if (!r.ok) throw new Error(data && data.error ? data.error : "HTTP " + r.status);
      } catch (e) {
        status.className = "error";
        status.textContent = "Could not load the host samples: " + e.message;
        return;
      }
      root.setAttribute("data-points", String(data.t.length));
      shown = { data: data, follow: false, seconds: (end - start) / 1000 };
      const charts = root.querySelector("[data-charts]");
      if (!data.t.length) {
        charts.hidden = true;
        status.className = "empty";
        status.textContent =
          "No host samples from " + start.toLocaleString() + " to " + end.toLocaleString() +
          ": pick another range, or check that the agent is running with its host collector on.";
      } else {
        charts.hidden = false;
        status.className = "muted";
        status.textContent = data.t.length + " points" +
          (data.step_s ? " (averages over " + data.step_s + " s)" : "") + ".";
        draw(data);
      }
      root.setAttribute("data-loaded", "true");
    }

    async function pick(seconds) {
      const end = new Date();
      await load(new Date(end.getTime() - seconds * 1000), end);
      // Raw samples of a range ending now: new ones are appended as they come.
      if (shown && !shown.data.step_s) shown.follow = true;
    }

    root.querySelectorAll("[data-range]").forEach(function (button) {
      button.addEventListener("click", function () {
        root.querySelectorAll("[data-range]").forEach(function (b) { b.classList.remove("current"); });
        button.classList.add("current");
        pick(Number(button.getAttribute("data-range")));
      });
    });
    const custom = root.querySelector("[data-custom]");
    if (custom) {
      custom.addEventListener("submit", function (ev) {
        ev.preventDefault();
        const start = new Date(custom.elements.start.value);
        const end = new Date(custom.elements.end.value);
        if (isNaN(start) || isNaN(end) || end <= start) {
          status.className = "error";
          status.textContent = "Pick a start before the end.";
          return;
        }
        load(start, end);
      });
    }
    pick(Number(root.getAttribute("data-default-range") || 86400));
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-host-charts]").forEach(function (root) {
      if (window.uPlot) hostCharts(root);
    });
  });
})();
