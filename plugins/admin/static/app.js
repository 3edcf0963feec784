// The admin page: polls /admin/api/state every 2 s and renders it.
"use strict";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

function pluginBadges(plugins) {
  const box = el("div", { class: "badges" });
  if (!Array.isArray(plugins) || plugins.length === 0) { box.append(el("span", { class: "muted" }, "–")); return box; }
  for (const p of plugins) {
    const state = p.state || p.State || "unknown";
    const restarts = p.restarts ?? p.Restarts ?? 0;
    const name = p.name || p.Name;
    const cls = state === "running" ? "ok" : "bad";
    box.append(el("span", { class: "badge " + cls, title: state + ", restarts: " + restarts }, name + (restarts ? " ↻" + restarts : "")));
  }
  return box;
}

function render(s) {
  document.getElementById("t-instances").textContent = s.instances.length;
  document.getElementById("t-sockets").textContent = s.totals.sockets;
  document.getElementById("t-users").textContent = s.totals.users;
  document.getElementById("t-pages").textContent = s.totals.pages;
  const chat = s.chatPerMinute || [];
  document.getElementById("t-chat").textContent = chat.length ? chat[chat.length - 1] : 0;

  const inst = document.getElementById("instances");
  inst.replaceChildren();
  if (s.instances.length === 0) inst.append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "no live instance")));
  for (const i of s.instances) {
    inst.append(el("tr", {},
      el("td", {}, el("div", {}, i.name || i.id), el("div", { class: "muted small" }, i.id)),
      el("td", { class: "num" }, i.sockets),
      el("td", {}, pluginBadges(i.plugins)),
      el("td", { class: "num muted" }, ago(i.lastSeen))));
  }

  const pages = document.getElementById("pages");
  pages.replaceChildren();
  if (s.pages.length === 0) pages.append(el("tr", {}, el("td", { colspan: 2, class: "muted" }, "nobody is on a page")));
  for (const p of s.pages) {
    pages.append(el("tr", {}, el("td", { class: "mono" }, p.key), el("td", { class: "num" }, p.users)));
  }

  const chart = document.getElementById("chart");
  chart.replaceChildren();
  const maxv = Math.max(1, ...chat);
  chat.forEach((v, idx) => {
    const bar = el("div", { class: "bar", title: v + " messages, " + (chat.length - 1 - idx) + " min ago" });
    bar.style.height = Math.round((v / maxv) * 100) + "%";
    chart.append(el("div", { class: "col" }, bar, el("div", { class: "small muted" }, v)));
  });
}

async function tick() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/admin/api/state", { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { location.href = "/admin"; return; }
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    status.textContent = "live · " + new Date().toLocaleTimeString();
    status.className = "pill ok";
  } catch (e) {
    status.textContent = "not updating: " + e.message;
    status.className = "pill bad";
  }
}

tick();
setInterval(tick, 2000);
