// The home page: log in with POST /api/v1/auth/login, show GET /api/v1/status,
// log out with POST /api/v1/auth/logout. Plain DOM, no framework.
"use strict";

// The token lives in sessionStorage, not localStorage: it survives a reload
// of this tab but dies with the tab and is never shared with other tabs or
// kept on disk after the browser closes. (Memory alone would log the person
// out on every reload.) The strict Content-Security-Policy of this page is
// what keeps other scripts from reading it.
const TOKEN_KEY = "pbx.token";

function $(id) {
  return document.getElementById(id);
}

function say(text) {
  $("message").textContent = text;
}

function showLogin() {
  $("status").hidden = true;
  $("login").hidden = false;
  $("password").value = "";
  $("username").focus();
}

async function answer(response) {
  // Every API error is JSON {"error": "..."}; anything else says the status.
  try {
    return await response.json();
  } catch (e) {
    return { error: `HTTP ${response.status}` };
  }
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor(s / 3600) % 24, "h"],
                 [Math.floor(s / 60) % 60, "min"], [s % 60, "s"]];
  const shown = parts.filter(([n], i) => n > 0 || i === parts.length - 1);
  return shown.map(([n, unit]) => `${n} ${unit}`).join(" ");
}

async function showStatus() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    showLogin();
    return;
  }
  const response = await fetch("/api/v1/status", { headers: { Authorization: `Bearer ${token}` } });
  const body = await answer(response);
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    say("Your session ended; log in again.");
    showLogin();
    return;
  }
  $("login").hidden = true;
  $("status").hidden = false;
  if (!response.ok) {
    say(`Status: ${body.error}`);
    return;
  }
  say("");
  $("status-version").textContent = body.version;
  $("status-uptime").textContent = duration(body.uptime);
  $("status-registrations").textContent = String(body.counts.registrations);
  $("status-calls").textContent = String(body.counts.calls);
  $("status-extensions").textContent = String(body.counts.extensions);
  $("status-listeners").textContent = body.listeners.join(", ");
  $("status-features").textContent = body.features.join(", ") || "none";
}

async function logIn(event) {
  event.preventDefault();
  const response = await fetch("/api/v1/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("username").value, password: $("password").value }),
  });
  const body = await answer(response);
  if (!response.ok) {
    say(`Not logged in: ${body.error}`);
    $("password").value = "";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, body.token);
  say("");
  await showStatus();
}

async function logOut() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  if (token) {
    await fetch("/api/v1/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  }
  say("Logged out.");
  showLogin();
}

function failed(error) {
  say(`The server did not answer: ${error.message}`);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => logIn(event).catch(failed));
  $("refresh").addEventListener("click", () => showStatus().catch(failed));
  $("logout").addEventListener("click", () => logOut().catch(failed));
  showStatus().catch(failed);
});
