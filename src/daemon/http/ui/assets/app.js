// shipit daemon: the run history and one run's live log.
//
// Everything the API returns is inserted with textContent, never as markup. The API token is kept
// in sessionStorage (this tab only) and sent as a bearer token; it never goes into a URL. The log
// is read with fetch() and a stream reader rather than EventSource, because EventSource cannot
// send an Authorization header.
"use strict";

(() => {
  const TOKEN_KEY = "shipit.apiToken";
  const REFRESH_MS = 3000;
  // How long to wait before reading the log again after its stream ended while the run goes on.
  const LOG_RECONNECT_MS = 1000;
  const ENDED = new Set(["succeeded", "failed", "cancelled", "superseded"]);

  const $ = (id) => document.getElementById(id);
  const els = {
    form: $("token-form"),
    token: $("token"),
    forget: $("forget-token"),
    status: $("status"),
    notice: $("notice"),
    body: $("runs-body"),
    empty: $("runs-empty"),
    logSection: $("log-section"),
    logHeading: $("log-heading"),
    logStatus: $("log-status"),
    log: $("log"),
  };

  let refreshTimer = null;
  let runsById = new Map();
  let lastRendered = "";
  // The run whose log is shown: its id, the last line number received and the fetch to abort.
  let shown = null;

  // ---------------------------------------------------------------- token

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function authHeaders(extra) {
    return Object.assign({ Authorization: "Bearer " + token() }, extra || {});
  }

  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = els.token.value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    els.token.value = "";
    start();
  });

  els.forget.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    els.token.placeholder = "";
    stop();
    closeLog();
    render([]);
    setNotice("", false);
    setStatus("Enter an API token to see the runs.", false);
  });

  function setStatus(text, isError) {
    els.status.textContent = text;
    els.status.classList.toggle("error", !!isError);
  }

  // What became of the last cancel or retry: kept until the next one, unlike the refresh status.
  function setNotice(text, isError) {
    els.notice.textContent = text;
    els.notice.classList.toggle("error", !!isError);
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, options) {
    const response = await fetch(path, Object.assign({ cache: "no-store" }, options || {}, {
      headers: authHeaders({ Accept: "application/json" }),
    }));
    if (!response.ok) {
      let detail = "";
      try {
        const body = await response.json();
        detail = body && (body.message || body.error) ? String(body.message || body.error) : "";
      } catch (_) {
        // Not JSON: the status line says enough.
      }
      throw new ApiError(response.status, detail || response.status + " " + response.statusText);
    }
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  function explain(error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      return "The daemon refused this token (HTTP " + error.status + "). Enter another one.";
    }
    return "Could not reach the daemon: " + error.message;
  }

  // ---------------------------------------------------------------- runs table

  function start() {
    stop();
    els.token.placeholder = "a token is set for this tab";
    refresh();
    refreshTimer = setInterval(refresh, REFRESH_MS);
  }

  function stop() {
    if (refreshTimer !== null) clearInterval(refreshTimer);
    refreshTimer = null;
  }

  async function refresh() {
    if (!token()) return;
    try {
      const body = await api("/api/runs");
      const runs = Array.isArray(body) ? body : (body && Array.isArray(body.runs) ? body.runs : []);
      render(runs);
      setStatus(runs.length + (runs.length === 1 ? " run" : " runs") + ", updated " +
        new Date().toLocaleTimeString(), false);
      maybeOpenFromHash();
    } catch (error) {
      setStatus(explain(error), true);
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) stop();
    }
  }

  function cell(row, content, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    row.appendChild(td);
    return td;
  }

  function code(text, title) {
    const c = document.createElement("code");
    c.textContent = text;
    if (title) c.title = title;
    return c;
  }

  function stateBadge(state) {
    const span = document.createElement("span");
    const known = /^[a-z_]+$/.test(state) ? state : "unknown";
    span.className = "state state-" + known;
    span.textContent = state;
    return span;
  }

  function time(value) {
    if (!value) return document.createTextNode("\u2014");
    const t = document.createElement("time");
    t.dateTime = value;
    const date = new Date(value);
    // Month, day and time in UTC keep the table narrow; the full timestamp is the tooltip.
    t.textContent = isNaN(date) ? value : date.toISOString().slice(5, 19).replace("T", " ");
    t.title = value;
    return t;
  }

  function button(label, action, runId, disabled) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.dataset.action = action;
    b.dataset.runId = String(runId);
    b.setAttribute("aria-label", label + " run " + runId);
    b.disabled = !!disabled;
    return b;
  }

  function shortRef(ref) {
    return String(ref || "").replace(/^refs\/(heads|tags)\//, "");
  }

  function render(runs) {
    // Rebuilding the rows would take the focus off a button someone is about to press: only
    // when something changed.
    const snapshot = JSON.stringify(runs) + "|" + (shown ? shown.id : "") + "|" + !!token();
    if (snapshot === lastRendered) return;
    lastRendered = snapshot;
    runsById = new Map(runs.map((run) => [String(run.id), run]));
    const rows = document.createDocumentFragment();
    for (const run of runs) {
      const tr = document.createElement("tr");
      tr.dataset.runId = String(run.id);
      tr.dataset.state = String(run.state);
      if (shown && String(shown.id) === String(run.id)) tr.className = "selected";
      const th = document.createElement("th");
      th.scope = "row";
      th.className = "num";
      th.textContent = "#" + run.id;
      tr.appendChild(th);
      cell(tr, String(run.repository || ""));
      cell(tr, code(shortRef(run.git_ref), run.git_ref));
      cell(tr, code(String(run.sha || "").slice(0, 7), run.sha));
      cell(tr, stateBadge(String(run.state)), "state-cell");
      cell(tr, time(run.queued_at));
      cell(tr, time(run.started_at));
      cell(tr, time(run.finished_at));
      cell(tr, run.exit_code === null || run.exit_code === undefined ? "\u2014" : String(run.exit_code), "num exit");
      const actions = cell(tr, "", "actions");
      const ended = ENDED.has(run.state);
      actions.appendChild(button("Log", "log", run.id, false));
      actions.appendChild(button("Cancel", "cancel", run.id, ended || run.cancel_requested));
      actions.appendChild(button("Retry", "retry", run.id, !ended));
      rows.appendChild(tr);
    }
    els.body.replaceChildren(rows);
    els.empty.hidden = runs.length !== 0 || !token();
    if (shown) showLogState();
  }

  els.body.addEventListener("click", async (event) => {
    const target = event.target instanceof Element ? event.target.closest("button[data-action]") : null;
    if (!target) return;
    const id = target.dataset.runId;
    const action = target.dataset.action;
    if (action === "log") {
      location.hash = "run-" + id;
      openLog(id);
      return;
    }
    target.disabled = true;
    try {
      const result = await api("/api/runs/" + encodeURIComponent(id) + "/" + action, { method: "POST" });
      // A retry answers with the new run's number: {"run": 12}.
      const newId = result && (typeof result.run === "number" ? result.run : undefined);
      setNotice(action === "retry"
        ? "Run " + id + " queued again" + (newId !== undefined ? " as run " + newId : "") + "."
        : "Asked run " + id + " to cancel.", false);
    } catch (error) {
      setNotice("Could not " + action + " run " + id + ": " + explain(error), true);
    }
    refresh();
  });

  // ---------------------------------------------------------------- live log

  function maybeOpenFromHash() {
    const match = /^#run-(\d+)$/.exec(location.hash);
    if (match && (!shown || shown.id !== match[1])) openLog(match[1]);
  }

  window.addEventListener("hashchange", maybeOpenFromHash);

  function closeLog() {
    if (shown && shown.controller) shown.controller.abort();
    shown = null;
    els.logSection.hidden = true;
    els.log.replaceChildren();
  }

  function openLog(id) {
    closeLog();
    shown = { id: String(id), last: null, controller: null, reading: false };
    els.logHeading.textContent = "Log of run #" + id;
    els.logSection.hidden = false;
    for (const tr of els.body.querySelectorAll("tr")) {
      tr.classList.toggle("selected", tr.dataset.runId === shown.id);
    }
    showLogState();
    readLog(shown);
  }

  function showLogState() {
    const run = runsById.get(shown.id);
    const lines = els.log.childElementCount;
    let text = lines + (lines === 1 ? " line" : " lines");
    if (run) text = "State: " + run.state + ". " + text + (ENDED.has(run.state) ? "." : ", following.");
    els.logStatus.textContent = text;
  }

  function appendLine(number, text) {
    const atBottom = els.log.scrollHeight - els.log.scrollTop - els.log.clientHeight < 8;
    const line = document.createElement("div");
    line.className = "line";
    if (number !== null) line.dataset.line = number;
    const n = document.createElement("span");
    n.className = "n";
    n.textContent = number === null ? "" : number;
    const t = document.createElement("span");
    t.className = "t";
    t.textContent = text;
    line.append(n, t);
    els.log.appendChild(line);
    if (atBottom) els.log.scrollTop = els.log.scrollHeight;
  }

  // Reads the log's event stream until it ends, then again (from the last line seen) as long as
  // the run is not over. A newer openLog aborts it.
  async function readLog(view) {
    const controller = new AbortController();
    view.controller = controller;
    while (shown === view) {
      try {
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (view.last !== null) headers["Last-Event-ID"] = view.last;
        const response = await fetch("/api/runs/" + encodeURIComponent(view.id) + "/log", {
          headers,
          cache: "no-store",
          signal: controller.signal,
        });
        if (!response.ok || !response.body) throw new ApiError(response.status, response.status + " " + response.statusText);
        const finished = await readEvents(response.body, view);
        if (finished) break;
      } catch (error) {
        if (controller.signal.aborted) return;
        els.logStatus.textContent = "Log stream interrupted: " + explain(error);
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) return;
      }
      if (shown !== view) return;
      const run = runsById.get(view.id);
      if (run && ENDED.has(run.state)) {
        // One last read picks up lines appended just before the run ended.
        if (view.drained) break;
        view.drained = true;
        continue;
      }
      await new Promise((resolve) => setTimeout(resolve, LOG_RECONNECT_MS));
    }
    if (shown === view) showLogState();
  }

  // Parses a text/event-stream body as the HTML standard describes it: lines end in CRLF, LF or
  // CR; `data:` lines accumulate, `id:` sets the last event id, a blank line dispatches, lines
  // starting with `:` are comments. Returns true when the server said the log is complete.
  async function readEvents(body, view) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let data = [];
    let eventType = "";
    let id = null;
    let complete = false;
    const dispatch = () => {
      if (id !== null) view.last = id;
      if (data.length > 0 || eventType) {
        const type = eventType || "message";
        if (type === "message") {
          appendLine(id, data.join("\n"));
          showLogState();
        } else if (type === "end") {
          // The run is over and every line was sent; the data is its final state.
          complete = true;
          const run = runsById.get(view.id);
          if (run && data.length > 0) run.state = data.join("");
        } else if (type === "error") {
          els.logStatus.textContent = "The daemon could not read the log: " + data.join(" ");
        }
      }
      data = [];
      eventType = "";
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
      let match;
      const lineEnd = /\r\n|\n|\r(?=[^\n])/g;
      let consumed = 0;
      while ((match = lineEnd.exec(buffer)) !== null) {
        const line = buffer.slice(consumed, match.index);
        consumed = match.index + match[0].length;
        if (line === "") {
          dispatch();
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let fieldValue = colon === -1 ? "" : line.slice(colon + 1);
        if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1);
        if (field === "data") data.push(fieldValue);
        else if (field === "id" && !fieldValue.includes("\0")) id = fieldValue;
        else if (field === "event") eventType = fieldValue;
      }
      buffer = buffer.slice(consumed);
      if (complete) {
        reader.cancel().catch(() => {});
        return true;
      }
    }
    return complete;
  }

  // ---------------------------------------------------------------- start

  if (token()) {
    setStatus("Loading runs\u2026", false);
    start();
  }
})();
