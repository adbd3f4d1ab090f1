/*
 * WorkLens tab reporter: the active tab's URL, title and audible state.
 *
 * Two destinations (options page, or the admin's managed storage):
 * - "agent" (default): the WorkLens agent's ActivityWatch API on this computer
 *   (127.0.0.1:5600), as heartbeats into a "web.tab.current" bucket, exactly what
 *   ActivityWatch's own web watcher sends; the agent merges them and queues them
 *   in its spool with everything else it collects.
 * - "server": a WorkLens server's ingest API with a device token; the extension
 *   merges heartbeats itself (one event per tab visit, re-sent with a growing
 *   duration under the same id, which the server stores once and extends).
 *
 * Private (incognito) windows are never reported; the manifest does not even
 * ask to run in them. Only http(s) pages are reported.
 *
 * A classic script, so that the same file runs as Chromium's service worker and
 * as Firefox's background script. The pure parts are on `WorkLensTabs` for tests.
 */
"use strict";

const api = typeof browser !== "undefined" ? browser : chrome;

const DEFAULTS = {
  mode: "agent",
  agentUrl: "http://127.0.0.1:5600",
  serverUrl: "",
  deviceToken: "",
  intervalSeconds: 30,
};
const BUCKET_TYPE = "web.tab.current";
const CLIENT = "worklens-extension";
const MAX_URL = 2048; // what the server's bounds allow comfortably
const MAX_TITLE = 1024;

// --- pure logic ---------------------------------------------------------------

/** The data of a tab worth reporting, or null (private, not a web page, none). */
function tabData(tab, tabCount) {
  if (!tab || tab.incognito || typeof tab.url !== "string") return null;
  if (!/^https?:\/\//i.test(tab.url)) return null;
  return {
    url: tab.url.slice(0, MAX_URL),
    title: (tab.title || "").slice(0, MAX_TITLE),
    audible: Boolean(tab.audible),
    incognito: false,
    tabCount: tabCount,
  };
}

function sameData(a, b) {
  return (
    a !== null &&
    b !== null &&
    a.url === b.url &&
    a.title === b.title &&
    a.audible === b.audible &&
    a.incognito === b.incognito
  );
}

/**
 * Heartbeat merge, as the agent does it: the same data within `pulseMs` of the
 * current event's end extends it; anything else starts a new event.
 * Returns the event to send: {id, startMs, durationMs, data}.
 */
function merge(current, data, nowMs, pulseMs, newId) {
  if (current && sameData(current.data, data) && nowMs - (current.startMs + current.durationMs) <= pulseMs) {
    return { id: current.id, startMs: current.startMs, durationMs: Math.max(current.durationMs, nowMs - current.startMs), data: current.data };
  }
  return { id: newId(), startMs: nowMs, durationMs: 0, data: data };
}

/** The wire event (protocol kind "aw") of a merged event. */
function wireEvent(event, bucket) {
  return {
    kind: "aw",
    id: event.id,
    start: new Date(event.startMs).toISOString(),
    duration: event.durationMs / 1000,
    bucket: bucket,
    bucket_type: BUCKET_TYPE,
    client: CLIENT,
    data: event.data,
  };
}

function bucketId() {
  const ua = (self.navigator && self.navigator.userAgent) || "";
  const name = /Firefox\//.test(ua) ? "firefox" : /Edg\//.test(ua) ? "edge" : "chrome";
  return "aw-watcher-web-" + name;
}

function trimSlash(url) {
  return String(url || "").replace(/\/+$/, "");
}

self.WorkLensTabs = { tabData, sameData, merge, wireEvent, bucketId, DEFAULTS };

// --- state and I/O --------------------------------------------------------------

let current = null; // the event being extended (server mode)
let bucketReady = ""; // the agent URL whose bucket exists
let busy = Promise.resolve();

async function config() {
  const local = await api.storage.local.get(DEFAULTS);
  let managed = {};
  try {
    managed = await api.storage.managed.get(null); // what the admin set wins
  } catch (e) {
    managed = {}; // no policy (or a browser without managed storage)
  }
  const merged = Object.assign({}, DEFAULTS, local, managed);
  merged.intervalSeconds = Math.min(600, Math.max(30, Number(merged.intervalSeconds) || 30));
  return merged;
}

async function status(ok, message) {
  await api.storage.local.set({ lastStatus: { ok: ok, message: message, at: new Date().toISOString() } });
}

async function activeTabData() {
  const tabs = await api.tabs.query({ active: true, lastFocusedWindow: true });
  const all = await api.tabs.query({});
  return tabData(tabs[0], all.length);
}

async function toAgent(cfg, data) {
  const base = trimSlash(cfg.agentUrl) + "/api/0/buckets/" + encodeURIComponent(bucketId());
  const json = { "Content-Type": "application/json" };
  if (bucketReady !== base) {
    const made = await fetch(base, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ client: CLIENT, type: BUCKET_TYPE, hostname: "unknown" }),
    });
    if (!made.ok && made.status !== 304) throw new Error("agent refused the bucket: HTTP " + made.status);
    bucketReady = base;
  }
  // Pulse time a little over the report interval, so an unchanged tab stays one event.
  const pulse = cfg.intervalSeconds + 15;
  const r = await fetch(base + "/heartbeat?pulsetime=" + pulse, {
    method: "POST",
    headers: json,
    body: JSON.stringify({ timestamp: new Date().toISOString(), duration: 0, data: data }),
  });
  if (!r.ok) {
    bucketReady = ""; // it may have been deleted: make it again next time
    throw new Error("agent refused the heartbeat: HTTP " + r.status);
  }
}

async function toServer(cfg, data) {
  if (!cfg.serverUrl || !cfg.deviceToken) throw new Error("server mode needs a server URL and a device token");
  const pulseMs = (cfg.intervalSeconds + 15) * 1000;
  const event = merge(current, data, Date.now(), pulseMs, () => crypto.randomUUID());
  const r = await fetch(trimSlash(cfg.serverUrl) + "/api/v1/ingest", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + cfg.deviceToken },
    body: JSON.stringify({ v: 1, batch_id: crypto.randomUUID(), events: [wireEvent(event, bucketId())] }),
  });
  if (!r.ok) throw new Error("server refused the event: HTTP " + r.status);
  current = event; // only once stored: a failed send is retried as the same event
}

async function report() {
  const cfg = await config();
  const data = await activeTabData();
  if (data === null) {
    current = null; // a private or non-web tab ends the current visit
    return;
  }
  try {
    if (cfg.mode === "server") await toServer(cfg, data);
    else await toAgent(cfg, data);
    await status(true, "reported " + data.url);
  } catch (e) {
    await status(false, String((e && e.message) || e));
  }
}

/** Reports one at a time, in order: a tab switch during a send waits for it. */
function schedule() {
  busy = busy.then(report, report);
  return busy;
}
self.WorkLensTabs.reportNow = schedule; // what the periodic alarm does, on demand

api.tabs.onActivated.addListener(() => schedule());
api.tabs.onUpdated.addListener((tabId, change, tab) => {
  if (tab.active && (change.url || change.title || "audible" in change || change.status === "complete")) schedule();
});
api.windows.onFocusChanged.addListener(() => schedule());
api.alarms.onAlarm.addListener((alarm) => {
  if (alarm.name === "worklens-report") schedule();
});
api.storage.onChanged.addListener((changes) => {
  if (changes.mode || changes.agentUrl || changes.serverUrl || changes.deviceToken) {
    bucketReady = "";
    current = null;
    schedule();
  }
  if (changes.intervalSeconds) startAlarm();
});

async function startAlarm() {
  const cfg = await config();
  // Chromium runs alarms at most every 30 s; events above cover every change.
  api.alarms.create("worklens-report", { periodInMinutes: cfg.intervalSeconds / 60 });
}

startAlarm();
schedule();
