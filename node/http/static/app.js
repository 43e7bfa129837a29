// ecert-chain dashboard: plain browser JavaScript, no build step, no external resources.
// Live data comes from GET /v1/events (server-sent events); everything else from the node's JSON API.
// Who the page reads as (CONTRACT §6): anonymous (public data only: status, cluster, block headers) or the org of
// the session cookie that the one-time login link (./scripts/run prints it) set. Same-origin requests send the
// cookie; the node decides what each answer holds, the page only hides what it would be refused anyway.
"use strict";

const PAGE_BLOCKS = 15;            // blocks per page: the chain view never loads the whole chain
const LIVE_MAX = 30;               // entries kept in the live list
const SUPERVISION_EVERY_MS = 5000; // the regulator's views are re-read at most this often
const MINE_EVERY_MS = 2000;        // the org's holdings are re-read at most this often on new blocks
const LOGIN_HINT = "log in with the link printed by ./scripts/run";
const SOON_MS = 7 * 24 * 3600e3;   // "maturing soon" horizon
const LIVE = new Set(["issued", "active", "financing", "financed", "defaulted"]);  // ecert.state LIVE_STATUSES: still owed

const state = {
  snapshot: null,
  blocksBefore: null,   // null = newest page; else the `before` of the page shown
  pageStack: [],        // `before` values of newer pages, for "Newer"
  openBlock: null,
  openTxsRow: null,     // the open block's txs row, kept across page refreshes: a block never changes
  certId: null,
  orgs: new Map(),      // org id -> org record, filled lazily
  me: null,             // {org_id, role, open_reads} when logged in (or reads are open), else null
  supervisionAt: 0,
  mineAt: 0,
};

// ---------------------------------------------------------------------------------------------- helpers

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function clear(node, ...children) { node.replaceChildren(...children.flat().filter((c) => c != null)); }

async function getJSON(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json" } });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const err = (body && body.error) || {};
    const e = new Error(err.message || `${resp.status} ${resp.statusText}`);
    e.status = resp.status; e.code = err.code || `http_${resp.status}`;
    throw e;
  }
  return body;
}

function yuan(fen) {
  if (typeof fen !== "number") return "—";
  const neg = fen < 0; const v = Math.abs(fen);
  const s = Math.floor(v / 100).toLocaleString("en-US") + "." + String(v % 100).padStart(2, "0");
  return (neg ? "-¥" : "¥") + s;
}

function when(ms) {
  if (typeof ms !== "number" || ms <= 0) return "—";
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function ago(ms) {
  if (typeof ms !== "number") return "—";
  if (ms < 1000) return `${ms} ms ago`;
  if (ms < 120e3) return `${(ms / 1000).toFixed(1)} s ago`;
  return `${Math.round(ms / 60e3)} min ago`;
}

function short(id, n = 10) { return typeof id === "string" && id.length > n + 2 ? id.slice(0, n) + "…" : (id ?? "—"); }
function badge(text, cls) { return el("span", { class: `badge ${cls || ""}` }, text ?? "—"); }
function errorText(e) {
  if (e.status === 401 && !loggedIn()) return loginHint("this needs a login");
  const status = e.status ? `${e.status} ` : "";
  return el("span", { class: "error", dataset: { status: e.status || "" } }, e.code ? `${status}${e.code}: ${e.message}` : String(e.message || e));
}
function num(v) { return typeof v === "number" ? v : "—"; }

function setHash(key, value) {
  const params = new URLSearchParams(location.hash.slice(1));
  if (value) params.set(key, value); else params.delete(key);
  history.replaceState(null, "", "#" + params.toString());
}

// ---------------------------------------------------------------------------------------------- who am I

function loggedIn() { return state.me !== null; }
function isRegulator() { return state.me?.role === "regulator"; }
function myOrg() { return state.me?.open_reads ? null : state.me?.org_id; }
function loginHint(what) { return el("span", { class: "login-hint" }, `${what}: ${LOGIN_HINT}`); }

async function whoami() {
  let me = null;
  try { me = await getJSON("/v1/dashboard/whoami"); } catch (e) { me = null; }
  state.me = me && (me.org_id || me.open_reads) ? me : null;
  renderLogin();
}

function renderLogin() {
  const me = state.me;
  document.body.dataset.login = me ? "1" : "0";
  document.body.dataset.org = myOrg() || "";
  document.body.dataset.role = me?.role || "";
  if (!me) {
    clear($("login-state"), el("span", { id: "login-hint", class: "login-hint" }, `public view · ${LOGIN_HINT}`));
  } else {
    clear($("login-state"), el("span", { id: "login-org" }, me.open_reads ? "open reads (private demo)" : `logged in as ${me.org_id} (${me.role})`),
      " ", me.open_reads ? null : el("button", { type: "button", id: "logout", onclick: logout }, "Log out"));
  }
  $("my-view").hidden = !myOrg();
  $("supervision-view").hidden = !isRegulator();
  for (const a of document.querySelectorAll("nav .needs-login")) a.hidden = !myOrg();
  for (const a of document.querySelectorAll("nav .needs-regulator")) a.hidden = !isRegulator();
}

async function logout() {
  try { await fetch("/logout", { method: "POST" }); } catch (e) { /* the cookie dies with its session anyway */ }
  location.reload();
}

// ---------------------------------------------------------------------------------------------- live: SSE

function connectEvents() {
  const conn = $("conn");
  const es = new EventSource("/v1/events");
  es.addEventListener("open", () => { conn.className = "conn conn-ok"; conn.title = "live"; });
  es.addEventListener("error", () => {
    conn.className = "conn conn-bad"; conn.title = "reconnecting…";
    // A refused stream (429, 401) is not retried by the browser: try again later, as whoever we are then.
    if (es.readyState === EventSource.CLOSED) setTimeout(() => whoami().then(connectEvents), 3000);
  });
  es.addEventListener("block", (ev) => {
    let block;
    try { block = JSON.parse(ev.data); } catch (e) { return; }
    addLive(block);
    if ((block.outcomes || []).length) { loadMine(false); loadSupervision(false); }
  });
  es.addEventListener("snapshot", (ev) => {
    let snap;
    try { snap = JSON.parse(ev.data); } catch (e) { return; }
    const first = state.snapshot === null;
    const prevHeight = state.snapshot?.status?.height;
    state.snapshot = snap;
    renderSummary(snap);
    renderCluster(snap);
    renderAlarms(snap.alarms);
    if (first) fillOrgSelect(snap);
    // A stream without alarms is an anonymous one: the session ended (the stream reconnected without it).
    if (loggedIn() && !("alarms" in snap) && !state.checkingLogin) {
      state.checkingLogin = true;
      whoami().finally(() => { state.checkingLogin = false; });
    }
    // Follow the chain while the newest page is shown.
    if (state.blocksBefore === null && snap.status?.height !== prevHeight && !first) loadBlocks();
  });
}

function renderSummary(snap) {
  const s = snap.status || {};
  document.body.dataset.nodeId = snap.node || "";
  document.body.dataset.ready = "1";
  document.title = `ecert-chain · ${s.node_id ?? "?"} (${s.role ?? "?"})`;
  clear($("node-summary"),
    `node ${s.node_id ?? "?"} (${s.org ?? "?"}) · ${s.role ?? "?"} · term ${num(s.term)} · leader ${s.leader_id ?? "none"} · height ${num(s.height)}`);
}

function renderCluster(snap) {
  const rows = snap.cluster || [];
  const leaders = rows.filter((r) => r.is_leader);
  clear($("cluster-note"), leaders.length ? `leader: ${leaders[0].id}` : "no leader known");
  clear($("cluster-table").tBodies[0], rows.map((r) => el("tr", {
    class: r.is_leader ? "leader" : "",
    dataset: { nodeId: r.id, role: r.role || "unknown", health: r.health, leader: r.is_leader ? "1" : "0" },
  },
  el("td", {}, r.id, r.self ? el("span", { class: "note" }, "(this node)") : null),
  el("td", {}, r.org ?? "—"),
  el("td", {}, badge(r.role ?? (r.health === "down" ? "unreachable" : "?"), `role-${r.role}`)),
  el("td", { class: "num" }, num(r.term)),
  el("td", { class: "num" }, num(r.commit_index)),
  el("td", { class: "num" }, num(r.applied_index)),
  el("td", { class: "num" }, num(r.height)),
  el("td", { class: "num" }, num(r.lag)),
  el("td", { class: `health-${r.health}` }, r.health),
  el("td", {}, r.self ? "—" : ago(r.last_contact_ms)),
  )));
}

function renderAlarms(alarms) {
  const count = $("alarm-count");
  if (alarms === undefined) {  // anonymous: alarms are for member organisations
    count.textContent = "–"; count.className = "count";
    clear($("alarm-list"), el("li", { class: "none" }, loginHint("alarms are shown to member organisations")));
    return;
  }
  count.textContent = String(alarms.length);
  count.className = "count" + (alarms.length ? " on" : "");
  if (!alarms.length) { clear($("alarm-list"), el("li", { class: "none" }, "No alarms.")); return; }
  clear($("alarm-list"), alarms.map((a) => el("li", {
    class: `alarm ${a.severity}`, dataset: { name: a.name, subject: a.subject },
  },
  el("div", {}, el("span", { class: "name" }, a.name), " · ", a.subject, " · ", a.severity),
  el("div", {}, a.message),
  el("div", { class: "note" }, a.since_ms ? `since ${when(a.since_ms)}` : ""),
  )));
}

function addLive(block) {
  const list = $("live-list");
  const none = list.querySelector(".none");
  if (none) none.remove();
  const outcomes = block.outcomes;
  const item = el("li", { class: "live-block", dataset: { height: block.height, outcomes: outcomes ? outcomes.length : "" } },
    el("div", {}, el("b", {}, `block ${block.height}`), ` · ${block.tx_count ?? (block.tx_ids || []).length} txs · ${block.proposer ?? "?"} · ${when(block.time)}`),
    outcomes === undefined ? null : outcomes.length === 0 ? el("div", { class: "note" }, "none of these transactions is yours to read")
      : el("ul", {}, outcomes.map((o) => el("li", { class: "live-tx", dataset: { txId: o.tx_id, status: o.status } },
        el("a", { class: "link mono", onclick: () => showTx(o.tx_id) }, short(o.tx_id, 12)), " ", badge(o.status, `st-${o.status}`), " ",
        o.error ? el("span", { class: "error" }, o.error.code)
          : (o.result?.certs || []).map((c) => el("a", { class: "link mono", onclick: () => loadLineage(c) }, short(c), " "))))));
  list.prepend(item);
  while (list.children.length > LIVE_MAX) list.lastElementChild.remove();
}

// ---------------------------------------------------------------------------------------------- chain view

// A page is headers and tx counts (GET /v1/blocks without tx_ids=true): it is re-read on every new block, and
// a block's txs are read only when it is opened (GET /v1/blocks/{h}/txs).
async function loadBlocks() {
  const q = new URLSearchParams({ limit: String(PAGE_BLOCKS) });
  if (state.blocksBefore !== null) q.set("before", String(state.blocksBefore));
  let blocks;
  try {
    const body = await getJSON(`/v1/blocks?${q}`);
    blocks = Array.isArray(body) ? body : (body.blocks || []);
  } catch (e) { clear($("blocks-note"), errorText(e)); return; }
  const tbody = $("block-table").tBodies[0];
  const rows = [];
  for (const b of blocks) {
    rows.push(el("tr", { class: "clickable", dataset: { height: b.height }, onclick: () => toggleBlock(b.height) },
      el("td", { class: "num" }, b.height), el("td", {}, when(b.time)), el("td", {}, b.proposer ?? "—"),
      el("td", { class: "num" }, b.tx_count ?? "—"), el("td", { class: "mono" }, short(b.hash, 16))));
    if (state.openBlock === b.height) rows.push(openTxsRow(b.height));
  }
  clear(tbody, rows);
  const first = blocks[0]?.height, last = blocks[blocks.length - 1]?.height;
  clear($("blocks-note"), blocks.length ? `blocks ${last}–${first}` : "no blocks yet");
  $("blocks-older").disabled = !blocks.length || last <= 1;
  $("blocks-newer").disabled = state.blocksBefore === null;
  state.lastPage = { first, last };
}

function openTxsRow(height) {
  if (state.openTxsRow?.dataset.txsOf !== String(height)) state.openTxsRow = blockTxsRow(height);
  return state.openTxsRow;
}

function blockTxsRow(height) {
  const cell = el("td", { colspan: 5 }, "loading…");
  const row = el("tr", { class: "txs-row", dataset: { txsOf: height } }, cell);
  if (!loggedIn()) return publicBlockTxs(height, cell, row);
  getJSON(`/v1/blocks/${height}/txs`).then((body) => {
    const txs = body.txs || [];
    if (!txs.length) { clear(cell, "no transactions"); return; }
    clear(cell, el("table", {}, el("thead", {}, el("tr", {},
      el("th", {}, "tx id"), el("th", {}, "type"), el("th", {}, "signer"), el("th", {}, "status"), el("th", {}, "result / error"))),
    el("tbody", {}, txs.map(txRow))));
  }).catch((e) => {
    clear(cell, errorText(e));
    if (state.openTxsRow === row) state.openTxsRow = null;  // not kept: the next refresh asks again
  });
  return row;
}

// Without a login a block's tx ids are public (GET /v1/blocks?tx_ids=true); each tx's type, signer and outcome
// are shown to its parties only (GET /v1/blocks/{h}/txs is a signed read, CONTRACT §6): the public view lists ids.
function publicBlockTxs(height, cell, row) {
  getJSON(`/v1/blocks?before=${height + 1}&limit=1&tx_ids=true`).then((page) => {
    const ids = (page.blocks || []).find((b) => b.height === height)?.tx_ids || [];
    if (!ids.length) { clear(cell, "no transactions"); return; }
    clear(cell, el("div", {}, loginHint(`${ids.length} txs; their types and outcomes are shown to their parties`)),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "tx id"))),
        el("tbody", {}, ids.map((id) => el("tr", { dataset: { txId: id } }, el("td", { class: "mono" }, id))))));
  }).catch((e) => {
    clear(cell, errorText(e));
    if (state.openTxsRow === row) state.openTxsRow = null;
  });
  return row;
}

function txRow(tx) {
  const err = tx.error || {};
  const code = tx.error_code || err.code;
  const certs = tx.result?.certs || [];
  return el("tr", { dataset: { txId: tx.tx_id, status: tx.status } },
    el("td", { class: "mono" }, el("a", { class: "link", onclick: () => showTx(tx.tx_id) }, short(tx.tx_id, 16))),
    el("td", {}, tx.type ?? "—"), el("td", {}, tx.signer ?? "—"),
    el("td", {}, badge(tx.status, `st-${tx.status}`)),
    el("td", {}, code ? el("span", { class: "error" }, code, tx.error_message || err.message ? `: ${tx.error_message || err.message}` : "")
      : certs.length ? certs.map((c) => el("a", { class: "link mono", onclick: () => loadLineage(c) }, short(c), " ")) : ""));
}

function toggleBlock(height) {
  state.openBlock = state.openBlock === height ? null : height;
  if (state.openBlock === null) state.openTxsRow = null;
  loadBlocks();
}

async function showTx(id) {
  id = (id || "").trim().toLowerCase();
  $("tx-input").value = id;
  if (!id) return;
  clear($("tx-status"), "looking up…");
  try {
    const tx = await getJSON(`/v1/tx/${encodeURIComponent(id)}`);
    clear($("tx-status"), "");
    setHash("tx", id);
    const certs = tx.result?.certs || [];
    const code = tx.error?.code || tx.error_code;
    clear($("tx-result"), el("div", { class: "tx-found", dataset: { status: tx.status } },
      el("dl", { class: "kv" },
        el("dt", {}, "tx id"), el("dd", { class: "mono" }, tx.tx_id || id),
        el("dt", {}, "status"), el("dd", {}, badge(tx.status, `st-${tx.status}`), code ? el("span", { class: "error" }, " ", code) : ""),
        el("dt", {}, "height"), el("dd", {}, tx.height ?? "—"),
        certs.length ? [el("dt", {}, "certificates"), el("dd", {}, certs.map((c) => el("a", { class: "link mono", onclick: () => loadLineage(c) }, short(c, 16), " ")))] : null),
      el("pre", { class: "json" }, JSON.stringify(tx, null, 2))));
  } catch (e) { clear($("tx-status"), errorText(e)); clear($("tx-result")); }
}

// ---------------------------------------------------------------------------------------------- certificates

async function loadLineage(id) {
  id = (id || "").trim();
  if (!id) return;
  $("cert-input").value = id;
  state.certId = id;
  clear($("cert-status"), "loading…");
  let lineage;
  try { lineage = await getJSON(`/v1/certs/${encodeURIComponent(id)}/lineage`); } catch (e) {
    clear($("cert-status"), errorText(e)); clear($("lineage-tree")); clear($("lineage-summary")); return;
  }
  setHash("cert", id);
  clear($("cert-status"), `${(lineage.certs || []).length} certificates in this tree`);
  drawLineage(lineage, id);
  document.getElementById("cert-view").scrollIntoView({ block: "nearest" });
}

function drawLineage(lineage, selectedId) {
  const certs = lineage.certs || [];
  const byId = new Map(certs.map((c) => [c.id, c]));
  const children = new Map();
  for (const c of certs) {
    if (c.parent_id && byId.has(c.parent_id)) {
      if (!children.has(c.parent_id)) children.set(c.parent_id, []);
      children.get(c.parent_id).push(c);
    }
  }
  const root = byId.get(lineage.root_id) || certs.find((c) => !c.parent_id);
  if (!root) { clear($("lineage-tree"), "empty lineage"); return; }

  const leaves = certs.filter((c) => !children.has(c.id) && c.status !== "split");
  const liveTotal = leaves.filter((c) => LIVE.has(c.status)).reduce((s, c) => s + c.amount, 0);
  const settledTotal = leaves.filter((c) => c.status === "settled").reduce((s, c) => s + c.amount, 0);
  const cancelled = root.status === "cancelled";
  const balanced = cancelled || liveTotal + settledTotal === root.amount;
  clear($("lineage-summary"), el("div", {
    id: "lineage-totals",
    dataset: { rootAmount: root.amount, liveTotal, settledTotal, nodes: certs.length, balanced: balanced ? "1" : "0" },
  },
  "root ", el("b", {}, yuan(root.amount)), " · live leaves ", el("b", {}, yuan(liveTotal)),
  settledTotal ? [" + settled ", el("b", {}, yuan(settledTotal))] : "",
  " · ", balanced ? el("span", { class: "ok" }, cancelled ? "✓ cancelled root" : "✓ leaves sum to the root")
    : el("span", { class: "bad" }, "✗ leaves do not sum to the root"),
  ` · debtor ${root.debtor ?? "—"} · maturity ${when(root.maturity)}`));

  // The holder a certificate was created for: a financed one has since passed to the bank.
  const firstHolder = (c) => c.finance?.seller || c.seller || c.holder;
  const nodeFor = (c, parent) => {
    const kids = children.get(c.id) || [];
    let how = `issued by ${c.debtor} to ${firstHolder(c)}`;
    if (parent) how = firstHolder(c) === parent.holder ? `split · kept by ${parent.holder}` : `transfer ${parent.holder} → ${firstHolder(c)}`;
    const extra = [];
    const fin = c.finance || {};
    if (fin.financed_at || c.financed_at) {
      extra.push(el("div", { class: "line fin" },
        `financed by ${fin.bank ?? c.holder}: ${yuan(fin.disbursed ?? c.disbursed)} paid to ${fin.seller ?? c.seller ?? "?"}`
        + ` (${fin.discount_bps ?? c.discount_bps ?? "?"} bps, ${fin.days ?? c.discount_days ?? "?"} d)`));
    } else if (c.status === "financing") {
      extra.push(el("div", { class: "line fin" }, `financing requested from ${fin.bank ?? c.finance_bank ?? "?"}`));
    }
    if (c.status === "settled") extra.push(el("div", { class: "line" }, `settled ${when(c.settled_at)}, paid to ${c.paid_to ?? c.holder}`));
    return el("li", {},
      el("div", {
        class: `cert-node${c.id === root.id ? " root" : ""}${c.id === selectedId ? " selected" : ""}`,
        dataset: { certId: c.id, status: c.status, amount: c.amount, holder: c.holder }, title: c.id,
        onclick: () => showCertDetail(c),
      },
      el("div", { class: "how" }, how),
      el("div", {}, el("span", { class: "amount" }, yuan(c.amount)), " ", badge(c.status, `st-${c.status}`), maturityFlag(c)),
      el("div", { class: "line" }, `holder ${c.holder}`, " · ", el("span", { class: "mono" }, short(c.id, 12))),
      extra),
      kids.length ? el("ul", {}, kids.map((k) => nodeFor(k, c))) : null);
  };
  clear($("lineage-tree"), el("ul", { class: "tree", id: "lineage-root" }, nodeFor(root, null)));
}

function showCertDetail(c) {
  clear($("cert-status"), el("span", { class: "mono" }, c.id));
}

function maturityFlag(c) {
  if (!LIVE.has(c.status) || typeof c.maturity !== "number") return null;
  const left = c.maturity - Date.now();
  if (left <= 0) return el("span", { class: "flag overdue" }, "overdue");
  if (left <= SOON_MS) return el("span", { class: "flag soon" }, "matures soon");
  return null;
}

async function firstLineage() {
  // A newcomer sees a tree without typing: the URL's cert, else the newest certificate on chain.
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("tx")) showTx(params.get("tx"));
  if (!loggedIn()) { clear($("cert-status"), loginHint("certificates are shown to their parties")); return; }
  if (params.get("cert")) return loadLineage(params.get("cert"));
  try {
    const latest = await getJSON("/v1/dashboard/latest-cert");
    if (latest.cert_id) return loadLineage(latest.cert_id);
    clear($("cert-status"), "no certificate on chain yet");
  } catch (e) { clear($("cert-status"), errorText(e)); }
}

// ---------------------------------------------------------------------------------------------- organisations

function fillOrgSelect(snap) {
  const orgs = [...new Set((snap.cluster || []).map((r) => r.org).filter(Boolean))].sort();
  clear($("org-select"), el("option", { value: "" }, "— org —"), orgs.map((o) => el("option", { value: o }, o)));
  const params = new URLSearchParams(location.hash.slice(1));
  if (!loggedIn()) { clear($("org-status"), loginHint("organisations are shown to members")); return; }
  const pick = params.get("org") || myOrg() || snap.status?.org;
  if (pick) { $("org-select").value = pick; loadOrg(pick); }
}

async function getOrg(id) {
  if (!state.orgs.has(id)) state.orgs.set(id, await getJSON(`/v1/orgs/${encodeURIComponent(id)}`));
  return state.orgs.get(id);
}

async function loadOrg(id) {
  id = (id || "").trim();
  if (!id) return;
  clear($("org-status"), "loading…");
  state.orgs.delete(id);
  let org, holdings = null, hidden = null;
  try {
    [org, holdings] = await Promise.all([getOrg(id), getJSON(`/v1/orgs/${encodeURIComponent(id)}/certs`).catch((e) => {
      if (e.status !== 403) throw e;
      hidden = e;  // an org's holdings are its own and the regulator's business
      return null;
    })]);
  } catch (e) { clear($("org-status"), errorText(e)); clear($("org-detail")); return; }
  setHash("org", id);
  if ([...$("org-select").options].some((o) => o.value === id)) $("org-select").value = id;
  clear($("org-status"), "");
  if (hidden) {
    clear($("org-detail"), el("dl", { class: "kv", dataset: { orgId: id, holdings: "hidden" } },
      el("dt", {}, "organisation"), el("dd", {}, `${org.name ?? id} (${id})`),
      el("dt", {}, "role"), el("dd", {}, org.role ?? "—"),
      el("dt", {}, "status"), el("dd", {}, badge(org.status ?? "—")),
      el("dt", {}, "holdings"), el("dd", { class: "note" }, `only ${id} itself and the regulator see them (403)`)));
    return;
  }
  const certs = holdings.certs || [];
  const now = Date.now();
  const live = certs.filter((c) => LIVE.has(c.status));
  const overdue = live.filter((c) => c.maturity <= now);
  const soon = live.filter((c) => c.maturity > now && c.maturity - now <= SOON_MS);
  const credit = el("div", {}, "");
  clear($("org-detail"),
    el("dl", { class: "kv", dataset: { orgId: id } },
      el("dt", {}, "organisation"), el("dd", {}, `${org.name ?? id} (${id})`),
      el("dt", {}, "role"), el("dd", {}, org.role ?? "—"),
      el("dt", {}, "status"), el("dd", {}, badge(org.status ?? "—")),
      el("dt", {}, "holdings"), el("dd", {}, `${live.length} live certificates, ${yuan(live.reduce((s, c) => s + c.amount, 0))}`),
      el("dt", {}, "maturing in 7 days"), el("dd", {}, `${soon.length} (${yuan(soon.reduce((s, c) => s + c.amount, 0))})`),
      el("dt", {}, "overdue"), el("dd", { class: overdue.length ? "error" : "" }, `${overdue.length} (${yuan(overdue.reduce((s, c) => s + c.amount, 0))})`)),
    el("h3", {}, "Credit lines"), credit,
    el("h3", {}, "Certificates held"),
    certs.length ? el("table", { id: "holdings" }, el("thead", {}, el("tr", {},
      el("th", {}, "certificate"), el("th", { class: "num" }, "amount"), el("th", {}, "status"), el("th", {}, "debtor"), el("th", {}, "maturity"))),
    el("tbody", {}, certs.map((c) => el("tr", { dataset: { certId: c.id } },
      el("td", { class: "mono" }, el("a", { class: "link", onclick: () => loadLineage(c.id) }, short(c.id, 16))),
      el("td", { class: "num" }, yuan(c.amount)), el("td", {}, badge(c.status, `st-${c.status}`)),
      el("td", {}, c.debtor ?? "—"), el("td", {}, when(c.maturity), maturityFlag(c)))))) : el("div", { class: "note" }, "none"),
    tradeDocs(org));
  loadCredit(id, org, credit);
}

function tradeDocs(org) {
  const docs = org.docs || org.trade_docs;
  if (!Array.isArray(docs) || !docs.length) return null;
  const row = (d) => {
    if (typeof d === "string") {
      return el("tr", {}, el("td", { class: "mono" }, el("a", { class: "link", onclick: () => showDoc(d) }, d)));
    }
    return el("tr", {}, el("td", { class: "mono" }, d.id ?? d.doc_id), el("td", {}, d.kind ?? ""),
      el("td", {}, yuan(d.amount)), el("td", {}, d.status ?? ""));
  };
  return [el("h3", {}, "Trade documents"), el("table", {}, el("tbody", {}, docs.map(row)))];
}

async function loadCredit(id, org, into) {
  // Credit lines are keyed (bank, core): ask for every bank/core pair this org can be part of.
  if (org.role !== "core" && org.role !== "bank") { clear(into, el("span", { class: "note" }, "only banks and core enterprises have credit lines")); return; }
  const others = [];
  for (const o of new Set((state.snapshot?.cluster || []).map((r) => r.org).filter(Boolean))) {
    if (o === id) continue;
    try { const rec = await getOrg(o); if ((org.role === "core" && rec.role === "bank") || (org.role === "bank" && rec.role === "core")) others.push(o); } catch (e) { /* unknown org */ }
  }
  const rows = [];
  for (const o of others) {
    const [bank, core] = org.role === "bank" ? [id, o] : [o, id];
    try {
      const line = await getJSON(`/v1/credit/${encodeURIComponent(bank)}/${encodeURIComponent(core)}`);
      rows.push(el("tr", {}, el("td", {}, `${bank} → ${core}`), el("td", { class: "num" }, yuan(line.used)),
        el("td", { class: "num" }, yuan(line.limit)), el("td", {}, `expires ${when(line.expires_at)}`)));
    } catch (e) { if (e.status !== 404 && e.status !== 403) rows.push(el("tr", {}, el("td", {}, `${bank} → ${core}`), el("td", { colspan: 3 }, errorText(e)))); }
  }
  clear(into, rows.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "line"), el("th", { class: "num" }, "used"),
    el("th", { class: "num" }, "limit"), el("th", {}, ""))), el("tbody", {}, rows)) : el("span", { class: "note" }, "none"));
}

async function showDoc(id) {
  id = (id || "").trim();
  if (!id) return;
  $("doc-input").value = id;
  try {
    const doc = await getJSON(`/v1/docs/${encodeURIComponent(id)}`);
    clear($("doc-status"), "");
    clear($("doc-result"), el("pre", { class: "json" }, JSON.stringify(doc, null, 2)));
  } catch (e) { clear($("doc-status"), errorText(e)); clear($("doc-result")); }
}

// ---------------------------------------------------------------------------------------------- my certificates

async function loadMine(force = true) {
  const me = myOrg();
  if (!me) return;
  if (!force && Date.now() - state.mineAt < MINE_EVERY_MS) return;
  state.mineAt = Date.now();
  let holdings;
  try { holdings = await getJSON(`/v1/orgs/${encodeURIComponent(me)}/certs`); } catch (e) { clear($("my-note"), errorText(e)); return; }
  const certs = holdings.certs || [];
  clear($("my-note"), `${me}: ${certs.length} live certificates, ${yuan(certs.reduce((s, c) => s + c.amount, 0))}`);
  clear($("my-certs"), certs.length ? el("table", { id: "my-table" }, el("thead", {}, el("tr", {},
    el("th", {}, "certificate"), el("th", { class: "num" }, "amount"), el("th", {}, "status"), el("th", {}, "debtor"),
    el("th", {}, "bank"), el("th", {}, "maturity"))),
  el("tbody", {}, certs.map((c) => el("tr", { class: "clickable", dataset: { certId: c.id, amount: c.amount }, onclick: () => loadLineage(c.id) },
    el("td", { class: "mono" }, short(c.id, 16)), el("td", { class: "num" }, yuan(c.amount)),
    el("td", {}, badge(c.status, `st-${c.status}`)), el("td", {}, c.debtor ?? "—"), el("td", {}, c.bank ?? "—"),
    el("td", {}, when(c.maturity), maturityFlag(c))))))
    : el("div", { class: "note" }, "no live certificates"));
}

// ---------------------------------------------------------------------------------------------- supervision

async function loadSupervision(force = true) {
  if (!isRegulator()) return;
  if (!force && Date.now() - state.supervisionAt < SUPERVISION_EVERY_MS) return;
  state.supervisionAt = Date.now();
  let sup;
  try { sup = await getJSON("/v1/supervision"); } catch (e) { clear($("supervision-note"), errorText(e)); return; }
  clear($("supervision-note"), `at height ${sup.height} · ${sup.live_certs} live certificates`,
    sup.complete ? "" : el("span", { class: "error" }, " (partial: more certificates than one read covers)"));
  const table = (id, head, rows) => el("table", { id }, el("thead", {}, el("tr", {}, head.map(([h, cls]) => el("th", { class: cls || "" }, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: head.length, class: "note" }, "none"))));
  clear($("sup-outstanding"), table("sup-outstanding-table", [["core enterprise"], ["outstanding", "num"], ["lines (bank: used / limit)"]],
    sup.outstanding_by_core.map((r) => el("tr", { dataset: { core: r.core, outstanding: r.outstanding } },
      el("td", {}, r.core), el("td", { class: "num" }, yuan(r.outstanding)),
      el("td", {}, r.lines.map((l) => `${l.bank}: ${yuan(l.used)} / ${yuan(l.limit)}`).join(" · "))))));
  clear($("sup-depth"), table("sup-depth-table", [["depth"], ["certificates", "num"], ["amount", "num"]],
    sup.certs_by_depth.map((r) => el("tr", { dataset: { depth: r.depth, count: r.count } },
      el("td", {}, r.depth === 0 ? "0 (roots)" : r.depth), el("td", { class: "num" }, r.count), el("td", { class: "num" }, yuan(r.amount))))));
  clear($("sup-financed"), table("sup-financed-table", [["bank"], ["certificates", "num"], ["principal", "num"], ["disbursed", "num"]],
    sup.financed_by_bank.map((r) => el("tr", { dataset: { bank: r.bank, principal: r.principal } },
      el("td", {}, r.bank), el("td", { class: "num" }, r.count), el("td", { class: "num" }, yuan(r.principal)),
      el("td", { class: "num" }, yuan(r.disbursed))))));
}

// ---------------------------------------------------------------------------------------------- wiring

function wire() {
  $("cert-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadLineage($("cert-input").value); });
  $("tx-form").addEventListener("submit", (ev) => { ev.preventDefault(); showTx($("tx-input").value); });
  $("org-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadOrg($("org-input").value || $("org-select").value); });
  $("org-select").addEventListener("change", () => loadOrg($("org-select").value));
  $("doc-form").addEventListener("submit", (ev) => { ev.preventDefault(); showDoc($("doc-input").value); });
  $("blocks-newest").addEventListener("click", () => { state.blocksBefore = null; state.pageStack = []; loadBlocks(); });
  $("blocks-older").addEventListener("click", () => {
    if (!state.lastPage?.last) return;
    state.pageStack.push(state.blocksBefore);
    state.blocksBefore = state.lastPage.last;
    loadBlocks();
  });
  $("blocks-newer").addEventListener("click", () => {
    state.blocksBefore = state.pageStack.length ? state.pageStack.pop() : null;
    loadBlocks();
  });
}

wire();
whoami().then(() => {
  connectEvents();
  loadBlocks();
  firstLineage();
  loadMine();
  loadSupervision();
});
