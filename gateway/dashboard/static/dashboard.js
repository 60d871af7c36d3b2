// The dashboard's live pages: one server-sent-events stream per page (polling its
// JSON feed instead where a stream cannot be had), and the overview's two charts,
// drawn as plain SVG. Text from the server is placed with textContent; the tables
// come rendered (and escaped) by the server.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var POLL_EVERY = 2000; // ms between looks when polling
  var body = document.body;

  function setLive(text) {
    var live = document.getElementById("live");
    if (live) live.textContent = text;
  }

  // Follow the page's feed: onData(data) for each update; onEnd() when the server
  // says the stream is over (a job that ended).
  function follow(onData, onEnd) {
    var eventsUrl = body.dataset.events, feedUrl = body.dataset.feed;
    if (!feedUrl) return;
    var timer = null;

    function poll() {
      fetch(feedUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (r.status === 401) { location.reload(); return null; }
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (data) {
          if (!data) return;
          setLive("live (polling)");
          onData(data);
          if (data.done && onEnd) { clearInterval(timer); onEnd(); }
        })
        .catch(function () { setLive("cannot reach the gateway; retrying"); });
    }

    function startPolling() {
      if (timer === null) { poll(); timer = setInterval(poll, POLL_EVERY); }
    }

    if (!window.EventSource || !eventsUrl) { startPolling(); return; }
    var source = null, ended = false;

    function open() {
      source = new EventSource(eventsUrl);
      source.onopen = function () { setLive("live"); };
      source.onmessage = function (event) { setLive("live"); onData(JSON.parse(event.data)); };
      source.addEventListener("end", function () {
        ended = true; source.close(); if (onEnd) onEnd();
      });
      source.addEventListener("signedout", function () { source.close(); location.reload(); });
      source.addEventListener("problem", function (event) {
        ended = true; source.close();
        setLive(JSON.parse(event.data).message);
      });
      source.onerror = function () {
        if (source.readyState === EventSource.CLOSED) { setLive("stream closed; polling"); startPolling(); }
        else setLive("reconnecting…");
      };
    }

    // A hidden tab lets its stream go (browsers open only a few connections to one
    // server, and the gateway need not build what nobody sees); it follows again, from
    // the current data, when shown.
    document.addEventListener("visibilitychange", function () {
      if (ended || timer !== null) return;
      if (document.hidden && source) { source.close(); source = null; setLive("paused"); }
      else if (!document.hidden && !source) open();
    });
    open();
  }

  // Replace an element's server-rendered (and escaped) HTML, only when it changed: a
  // table the user hovers or selects in is left alone while it is the same.
  var placedHtml = {};
  function place(id, html) {
    var el = document.getElementById(id);
    if (el && html !== undefined && placedHtml[id] !== html) {
      el.innerHTML = html;
      placedHtml[id] = html;
    }
  }

  function setStats(data) {
    var values = { busy: data.busy, idle: data.idle };
    Object.keys(data.counts || {}).forEach(function (k) { values[k] = data.counts[k]; });
    document.querySelectorAll("[data-stat]").forEach(function (el) {
      var v = values[el.dataset.stat];
      if (v !== undefined) el.textContent = String(v);
    });
  }

  function svg(name, attrs, parent) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(el);
    return el;
  }

  function drawThroughput(perSecond) {
    var chart = document.getElementById("throughput");
    if (!chart || !perSecond) return;
    var width = 900, height = 120, top = Math.max(1, Math.max.apply(null, perSecond));
    var step = width / Math.max(1, perSecond.length - 1);
    var points = perSecond.map(function (v, i) {
      return (i * step).toFixed(1) + "," + (height - 4 - (v / top) * (height - 16)).toFixed(1);
    });
    chart.textContent = "";
    svg("polyline", { points: points.join(" "), class: "line" }, chart);
    var label = svg("text", { x: 4, y: 12, class: "axis" }, chart);
    label.textContent = "max " + top + "/s";
    var last = perSecond.slice(-10).reduce(function (a, b) { return a + b; }, 0) / 10;
    var rate = document.getElementById("rate");
    if (rate) rate.textContent = "now " + last.toFixed(1) + " jobs/s (last 10 s)";
  }

  // The allocation timeline: a row per worker, a bar per job. data.allocations is
  // {workers: [address...], jobs: [[worker index, id, name, status, start, end]...]},
  // times in seconds before data.time (end null while the job runs).
  function drawTimeline(data) {
    var box = document.getElementById("timeline");
    if (!box) return;
    var names = {}, rows = [];
    var placed = data.allocations || { workers: [], jobs: [] };
    (data.workers || []).forEach(function (w) { names[w.address] = w.name; rows.push(w.address); });
    placed.workers.forEach(function (address) {
      if (rows.indexOf(address) < 0) rows.push(address);
    });
    var width = 900, rowHeight = 22, label = 150, span = data.timeline_window;
    var chart = svg("svg", {
      viewBox: "0 0 " + width + " " + (rows.length * rowHeight + 18),
      class: "chart", role: "img", "aria-label": "jobs per worker over time"
    });
    rows.forEach(function (address, i) {
      var y = i * rowHeight;
      var text = svg("text", { x: 0, y: y + 15, class: "axis" }, chart);
      text.textContent = address in names ? "worker " + names[address] : address;
      svg("line", { x1: label, x2: width, y1: y + rowHeight - 1, y2: y + rowHeight - 1, class: "grid" }, chart);
    });
    var scale = (width - label) / span;
    placed.jobs.forEach(function (job) {
      var row = rows.indexOf(placed.workers[job[0]]);
      var from = Math.max(job[4], -span), to = job[5] === null ? 0 : job[5];
      var rect = svg("rect", {
        x: (label + (from + span) * scale).toFixed(1), y: row * rowHeight + 3,
        width: Math.max(1.5, (to - from) * scale).toFixed(1), height: rowHeight - 7,
        class: "job " + job[3]
      }, chart);
      var title = svg("title", {}, rect);
      title.textContent = job[1] + (job[2] ? " " + job[2] : "") + " (" + job[3] + ")";
    });
    var axis = svg("text", { x: label, y: rows.length * rowHeight + 14, class: "axis" }, chart);
    axis.textContent = "−" + Math.round(span / 60) + " min";
    var now = svg("text", { x: width - 30, y: rows.length * rowHeight + 14, class: "axis" }, chart);
    now.textContent = "now";
    box.textContent = "";
    if (!rows.length) box.textContent = "No workers and no jobs yet.";
    else box.appendChild(chart);
  }

  function overview() {
    follow(function (data) {
      setStats(data);
      drawThroughput(data.throughput);
      drawTimeline(data);
      place("failures", data.failures_html);
      place("workers", data.workers_html);
    });
  }

  function jobs() {
    follow(function (data) {
      place("job-rows", data.rows_html);
    });
  }

  // A job's JSON field as the page shows it (as the server's filters do).
  function shown(field, value) {
    if (/_at$/.test(field)) return String(value).replace("T", " ").slice(0, 19);
    if (field === "duration") {
      if (value < 60) return value < 10 ? value.toFixed(1) + " s" : Math.round(value) + " s";
      if (value < 3600) return Math.floor(value / 60) + " min " + Math.floor(value % 60) + " s";
      return Math.floor(value / 3600) + " h " + Math.floor((value % 3600) / 60) + " min";
    }
    if (field === "result_size") {
      var units = ["B", "KiB", "MiB", "GiB"], i = 0;
      while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
      return i ? value.toFixed(1) + " " + units[i] : value + " B";
    }
    return String(value);
  }

  function job() {
    var wasDone = body.dataset.done === "yes";
    var logs = document.getElementById("logs");
    follow(function (data) {
      var info = data.job;
      document.querySelectorAll("[data-field]").forEach(function (el) {
        var v = info[el.dataset.field];
        if (v === undefined || v === null) return;
        if (el.dataset.field === "status") el.className = "status " + v;
        el.textContent = shown(el.dataset.field, v);
      });
      if (data.logs && logs) logs.textContent += data.logs; // the stream: what is new
      if (data.log_text !== undefined && logs) logs.textContent = data.log_text; // polling: all
    }, function () {
      if (!wasDone) location.reload(); // show its final state: error, downloads, stored logs
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = body.dataset.page;
    if (page === "overview" || page === "workers") overview();
    else if ((page === "jobs" || page === "gangs") && !body.dataset.job) jobs();
    else if (body.dataset.job) job();
  });
})();
