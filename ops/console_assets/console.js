// Junction console: the page over ops/console.py's JSON API. Every value from the API is shown
// as text (textContent), never as markup: dead letters carry what webhooks sent.
"use strict";

const TOKEN_HEADER = "X-Junction-Token";
const $ = (id) => document.getElementById(id);
let overview = { integrations: [] };
let pendingRedrive = null; // the preview the operator is asked to confirm

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options) {
  const answer = await fetch(path, Object.assign({ cache: "no-store", credentials: "same-origin" }, options || {}));
  let doc = null;
  try {
    doc = await answer.json();
  } catch (e) {
    doc = { error: `HTTP ${answer.status}` };
  }
  if (!answer.ok) {
    const error = new Error(doc.error || `HTTP ${answer.status}`);
    error.status = answer.status;
    throw error;
  }
  return doc;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) q.set(key, value);
  return q.toString();
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.floor(seconds);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

function when(iso) {
  if (!iso) return "-";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  return `${iso.replace("+00:00", "Z")} (${age((Date.now() - at.getTime()) / 1000)} ago)`;
}

function ids(map) {
  const parts = Object.entries(map || {}).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(", ") : "-";
}

function table(headers, rows, attrs) {
  return el(
    "table",
    attrs || {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows),
  );
}

function cell(value, cls) {
  return el("td", cls ? { class: cls } : {}, value === null || value === undefined ? "-" : value);
}

// -- sections -----------------------------------------------------------------------------------
const loaders = { status: loadStatus, dlq: loadDlq, trace: () => {}, sync: loadSync };

function show(section) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.section === section);
  for (const name of Object.keys(loaders)) $(name).hidden = name !== section;
  showError("");
  loaders[section]();
}

async function run(action) {
  try {
    showError("");
    await action();
  } catch (e) {
    showError(e.message);
  }
}

function breaker(row) {
  if (row.breaker === "closed") return cell("closed", "good");
  if (row.breaker === "open" && row.breaker_open_until) {
    const left = Math.max(0, Math.floor(row.breaker_open_until - Date.now() / 1000));
    return cell(`open (${left} s left)`, "bad");
  }
  return cell(String(row.breaker || "-").replace("_", "-"), "warn");
}

function loadStatus() {
  return run(async () => {
    const doc = await api("/api/status");
    const body = $("status-table").tBodies[0];
    body.replaceChildren(
      ...doc.rows.map((r) => {
        const key = { dataset: { integration: r.integration, target: r.target } };
        if (r.error) return el("tr", key, cell(r.integration), cell(r.target), el("td", { colspan: "7", class: "bad" }, r.error));
        return el(
          "tr",
          key,
          cell(r.integration),
          cell(r.target),
          cell(r.visible, "n"),
          cell(r.in_flight, "n"),
          cell(r.delayed, "n"),
          cell(r.dlq_depth, r.dlq_depth ? "n bad dlq" : "n good dlq"),
          cell(age(r.oldest_age_seconds)),
          breaker(r),
          cell(r.last_success ? when(r.last_success) : "never"),
        );
      }),
    );
  });
}

function fillTargets(integrationSelect, targetSelect) {
  const chosen = overview.integrations.find((i) => i.name === integrationSelect.value);
  const keep = targetSelect.value;
  targetSelect.replaceChildren(el("option", { value: "" }, "all"));
  for (const t of chosen ? chosen.targets : []) targetSelect.append(el("option", { value: t }, t));
  if ([...targetSelect.options].some((o) => o.value === keep)) targetSelect.value = keep;
}

function fillIntegrations() {
  for (const [i, t] of [
    ["dlq-integration", "dlq-target"],
    ["redrive-integration", "redrive-target"],
  ]) {
    const select = $(i);
    select.replaceChildren(el("option", { value: "" }, "all"));
    for (const integration of overview.integrations) select.append(el("option", { value: integration.name }, integration.name));
    select.addEventListener("change", () => fillTargets(select, $(t)));
    fillTargets(select, $(t));
  }
}

function loadDlq() {
  return run(async () => {
    const params = query({ integration: $("dlq-integration").value, target: $("dlq-target").value });
    const doc = await api(`/api/dlq?${params}`);
    const result = $("dlq-result");
    result.replaceChildren();
    const full = doc.queues.filter((q) => q.count > 0);
    if (!full.length) {
      result.append(el("p", { class: "empty good" }, "Every DLQ shown is empty."));
      return;
    }
    for (const q of full) {
      const name = `${q.integration}/${q.target}`;
      const box = el("div", { class: "queue", dataset: { queue: name } }, el("h3", {}, `${name}: ${q.count} message(s) in the DLQ`));
      for (const c of q.classes) {
        const rows = c.groups.map((g) =>
          el(
            "tr",
            { class: "group", dataset: { reason: g.reason } },
            cell(g.reason),
            cell(g.count, "n"),
            cell(when(g.oldest_failed_at)),
            cell(g.sample_entity_ids.join(", ") || "-", "mono"),
            el(
              "td",
              {},
              el("button", { type: "button", class: "prefill", onclick: () => prefill(q, c.error_class, g.filter_reason) }, "Redrive…"),
            ),
          ),
        );
        box.append(
          el(
            "div",
            { class: `class class-${c.error_class}`, dataset: { errorClass: c.error_class } },
            el("h4", {}, `${c.error_class} errors: ${c.count}`),
            table(["reason", "count", "oldest failed at", "sample entity ids", ""], rows, { class: "groups" }),
          ),
        );
      }
      const messages = q.messages.map((m) =>
        el(
          "tr",
          { class: "message", dataset: { messageId: m.message_id } },
          el("td", { class: "mono" }, el("button", { type: "button", class: "link inspect", onclick: () => inspect(m) }, m.message_id)),
          cell(m.error_class),
          cell(m.last_reason ? `${m.reason} (${m.last_reason})` : m.reason),
          cell(ids(m.entity_ids), "mono"),
          cell(m.attempts, "n"),
          cell(m.failed_at || "-"),
          cell(m.error || "-"),
        ),
      );
      box.append(table(["message id", "class", "reason", "entity ids", "attempts", "failed at", "error"], messages, { class: "messages" }));
      if (q.truncated) box.append(el("p", { class: "warn" }, "Showing the first messages only."));
      result.append(box);
    }
  });
}

function prefill(queue, errorClass, reason) {
  $("redrive-integration").value = queue.integration;
  fillTargets($("redrive-integration"), $("redrive-target"));
  $("redrive-target").value = queue.target;
  $("redrive-reason").value = reason;
  $("redrive-class").value = errorClass;
  resetRedrive();
  $("redrive-form").scrollIntoView();
}

function inspect(m) {
  return run(async () => {
    const detail = await api(`/api/dlq/message?${query({ id: m.message_id, integration: m.integration, target: m.target })}`);
    const box = $("message-detail");
    const rows = [
      ["integration / target", `${detail.integration}/${detail.target}`],
      ["class", detail.error_class],
      ["reason", detail.last_reason ? `${detail.reason} (${detail.last_reason})` : detail.reason],
      ["error", detail.error || "-"],
      ["entity ids", ids(detail.entity_ids)],
      ["attempts", detail.attempts ?? "-"],
      ["failed at", detail.failed_at || "-"],
      ...Object.entries(detail.attributes),
      ...Object.entries(detail.system),
    ].map(([k, v]) => el("tr", {}, el("th", {}, k), cell(v, "mono")));
    box.replaceChildren(
      el("div", { class: "bar" }, el("h3", {}, `Message ${detail.message_id}`), el("button", { type: "button", onclick: () => (box.hidden = true) }, "Close")),
      table(["attribute", "value"], rows, { class: "attributes" }),
    );
    if (detail.claim_check) {
      box.append(
        el("h4", {}, "Claim check: the body lies in S3 (a redrive sends the pointer)"),
        table(["field", "value"], Object.entries(detail.claim_check).map(([k, v]) => el("tr", {}, el("th", {}, k), cell(v, "mono")))),
      );
    }
    box.append(el("h4", {}, detail.claim_check ? "envelope" : "body"), el("pre", { id: "message-body" }, detail.body_is_json ? JSON.stringify(detail.body, null, 2) : detail.body));
    box.hidden = false;
    box.scrollIntoView();
  });
}

function redriveFields() {
  return {
    integration: $("redrive-integration").value,
    target: $("redrive-target").value,
    reason: $("redrive-reason").value.trim(),
    error_class: $("redrive-class").value,
  };
}

function resetRedrive() {
  pendingRedrive = null;
  $("redrive-confirm").hidden = true;
  $("redrive-result").hidden = true;
}

function previewRedrive(event) {
  event.preventDefault();
  resetRedrive();
  return run(async () => {
    const fields = redriveFields();
    const preview = await api(`/api/dlq/preview?${query(fields)}`);
    const where = preview.queues.filter((q) => q.count).map((q) => `${q.integration}/${q.target} (${q.count})`);
    if (!preview.count) {
      showResult(`No message matches ${preview.describe}: nothing to redrive.`);
      return;
    }
    pendingRedrive = { fields, preview };
    $("redrive-count").textContent =
      `${preview.count} message(s) will move back to their queue: ${where.join(", ")}; filter: ${preview.describe}. ` +
      "Redriven events take effect once (the processor's idempotency record is keyed on the business key).";
    $("redrive-confirm").hidden = false;
  });
}

function showResult(text, cls) {
  const result = $("redrive-result");
  result.textContent = text;
  result.className = cls || "";
  result.hidden = false;
}

function confirmRedrive() {
  if (!pendingRedrive) return;
  const { fields, preview } = pendingRedrive;
  return run(async () => {
    const token = $("token").value.trim();
    const body = Object.assign({}, fields, {
      queues: preview.queues.filter((q) => q.count).map((q) => ({ integration: q.integration, target: q.target, message_ids: q.message_ids })),
    });
    let doc;
    try {
      doc = await api("/api/dlq/redrive", {
        method: "POST",
        headers: { "Content-Type": "application/json", [TOKEN_HEADER]: token },
        body: JSON.stringify(body),
      });
    } catch (e) {
      if (e.status === 401) {
        showResult("Not moved: the token is missing or wrong. Paste the token `junction console` printed.", "bad");
        return;
      }
      throw e;
    }
    $("redrive-confirm").hidden = true;
    pendingRedrive = null;
    const parts = doc.queues.map((q) => `${q.integration}/${q.target}: moved ${q.moved} of ${q.confirmed}`);
    showResult(`Redriven: ${doc.moved} message(s). ${parts.join("; ")}.`, "good");
    await loadDlq();
  });
}

function searchTrace(event) {
  event.preventDefault();
  const anyId = $("trace-id").value.trim();
  if (!anyId) return;
  return run(async () => {
    const result = $("trace-result");
    result.replaceChildren();
    const doc = await api(`/api/trace?${query({ id: anyId })}`);
    for (const t of doc.traces) {
      const box = el("div", { class: "entity", dataset: { entity: t.entity_id } });
      if (t.matched_as.length) box.append(el("p", { class: "matched" }, `${anyId} is the ${t.matched_as.join(" and ")} of ${t.entity_id}`));
      const xref = Object.entries(t.ids).sort();
      box.append(
        el("h3", {}, `Cross-reference of ${t.entity_id}`),
        table(
          ["system id", "value"],
          xref.length ? xref.map(([k, v]) => el("tr", {}, cell(k), cell(v, "mono"))) : [el("tr", {}, cell("-"), cell("no hop has recorded ids yet"))],
          { class: "xref" },
        ),
      );
      if (!t.hops.length) {
        box.append(el("p", { class: "warn" }, `No hops left in the trace of ${t.entity_id} (expired).`));
      } else {
        const styles = { delivered: "good", duplicate: "muted", dead_lettered: "bad", retry_scheduled: "warn" };
        const hops = t.hops.map((h) =>
          el(
            "tr",
            { class: "hop" },
            cell(h.at.replace("+00:00", "Z")),
            cell(h.integration),
            cell(h.target || "-"),
            cell(h.outcome + (h.replay_id ? ` (replay ${h.replay_id.slice(0, 8)})` : ""), styles[h.outcome] || ""),
            cell(h.attempts, "n"),
            cell(h.latency_ms, "n"),
            cell(h.reason || "-"),
            cell(ids(h.target_ids), "mono"),
            cell(h.delivery_id || "-", "mono"),
          ),
        );
        box.append(
          el("h3", {}, `Trace of ${t.entity_id}`),
          table(["time", "integration", "target", "outcome", "attempts", "latency ms", "reason", "target ids", "delivery id"], hops, { class: "hops" }),
        );
      }
      result.append(box);
    }
  });
}

function loadSync() {
  return run(async () => {
    const doc = await api("/api/sync");
    const body = $("sync-table").tBodies[0];
    const outcomes = { caught_up: "good", deadline: "muted", failed: "bad", lost_lease: "warn" };
    body.replaceChildren(
      ...doc.integrations.map((s) => {
        const last = s.last_run;
        const c = s.cursor;
        const position = c.position === null || c.position === undefined ? "start" : String(c.position);
        const lease = s.lease_held && s.lease ? `${s.lease.holder} (until ${s.lease.expires_at})` : "free";
        return el(
          "tr",
          { dataset: { integration: s.integration } },
          cell(s.integration),
          cell(position + (c.kind === "token" ? " [token]" : ""), "mono"),
          cell(c.version, "n"),
          cell(s.lag_seconds === null ? "never caught up" : age(s.lag_seconds)),
          cell(last ? when(last.started_at) : "never"),
          cell(last ? last.outcome : "-", last ? outcomes[last.outcome] || "" : ""),
          cell(last ? last.pages : "-", "n"),
          cell(last ? last.changes : "-", "n"),
          cell(last && last.error ? last.error : "-", last && last.error ? "bad" : ""),
          cell(lease, s.lease_held ? "warn" : "good"),
          cell(`${s.failed_last_hour} of ${s.runs_last_hour}`, s.failed_last_hour ? "n bad" : "n good"),
        );
      }),
    );
  });
}

// -- start --------------------------------------------------------------------------------------
function takeTokenFromAddress() {
  // `junction console` prints the address with #token=...: the fragment never reaches a server.
  const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (match) {
    $("token").value = decodeURIComponent(match[1]);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

async function start() {
  takeTokenFromAddress();
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => show(tab.dataset.section));
  $("status-refresh").addEventListener("click", loadStatus);
  $("sync-refresh").addEventListener("click", loadSync);
  $("dlq-load").addEventListener("click", loadDlq);
  $("redrive-form").addEventListener("submit", previewRedrive);
  $("redrive-go").addEventListener("click", confirmRedrive);
  $("redrive-cancel").addEventListener("click", resetRedrive);
  $("trace-form").addEventListener("submit", searchTrace);
  await run(async () => {
    overview = await api("/api/overview");
    $("where").textContent = `${overview.target.kind}, stage ${overview.target.stage}`;
    fillIntegrations();
  });
  show("status");
}

document.addEventListener("DOMContentLoaded", start);
