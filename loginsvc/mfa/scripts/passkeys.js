// Passkeys in the pages (WebAuthn): the service's only script, served from its own origin because the
// Content-Security-Policy allows scripts from 'self' and nowhere else. Without it (or without
// WebAuthn in the browser) the pages work as before with passwords and codes.
// The server (loginsvc/mfa/passkey_views.py) keeps every decision; this file only carries the
// options to navigator.credentials and the answer back, converting binary fields to base64url.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  const decode = (text) => {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
  };
  const encode = (buffer) => {
    let text = "";
    new Uint8Array(buffer).forEach((byte) => { text += String.fromCharCode(byte); });
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const byId = (id) => document.getElementById(id);
  const token = () => (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": token() },
      body: JSON.stringify(body),
    });
    let data = {};
    try { data = await response.json(); } catch (error) { data = { error: "unexpected answer" }; }
    return { ok: response.ok, status: response.status, data };
  }

  function say(text) {
    const box = byId("passkey-status");
    if (box) { box.textContent = text; box.hidden = !text; }
  }

  function requestOptions(options) {
    options.challenge = decode(options.challenge);
    (options.allowCredentials || []).forEach((c) => { c.id = decode(c.id); });
    return options;
  }

  function creationOptions(options) {
    options.challenge = decode(options.challenge);
    options.user.id = decode(options.user.id);
    (options.excludeCredentials || []).forEach((c) => { c.id = decode(c.id); });
    return options;
  }

  function answer(credential) {
    const r = credential.response;
    const json = {
      id: credential.id, rawId: encode(credential.rawId), type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: encode(r.clientDataJSON) },
    };
    if (r.attestationObject) {
      json.response.attestationObject = encode(r.attestationObject);
      json.response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      json.response.authenticatorData = encode(r.authenticatorData);
      json.response.signature = encode(r.signature);
      json.response.userHandle = r.userHandle ? encode(r.userHandle) : null;
    }
    return json;
  }

  function refusal(result) {
    if (result.status === 429) return result.data.detail || "Too many failed attempts. Please wait and try again.";
    return result.data.detail || result.data.error || "The passkey was not accepted.";
  }

  // Sign in (login page) or finish a sign-in (second step): one ceremony at a time per page. The
  // autofill request (conditional) never replaces one the person asked for with the button.
  let running = null;
  async function getPasskey(purpose, finishUrl, extra, conditional) {
    if (running && conditional) return false;
    if (running) running.abort();
    const controller = new AbortController();
    running = controller;
    try {
      const options = await post("/api/passkey/options", { purpose });
      if (!options.ok) { if (!conditional) say(refusal(options)); return false; }   // autofill fails quietly
      let credential;
      try {
        credential = await navigator.credentials.get({
          publicKey: requestOptions(options.data), signal: controller.signal,
          mediation: conditional ? "conditional" : "optional",
        });
      } catch (error) {
        if (error.name !== "AbortError" && !conditional) say("No passkey was used. Try again, or use another way.");
        return false;
      }
      if (!credential) return false;
      say("Checking your passkey…");
      const result = await post(finishUrl, Object.assign({ credential: answer(credential) }, extra));
      if (result.ok) { window.location.assign(result.data.redirect || "/"); return true; }
      say(refusal(result));
      return false;
    } finally {
      if (running === controller) running = null;
    }
  }

  async function register(form) {
    say("Follow your browser's prompt to create the passkey…");
    const password = byId("passkey-password");  // asked for unless the session signed in moments ago
    const options = await post("/api/passkey/options", { purpose: "register", password: password ? password.value : "" });
    if (!options.ok) { say(refusal(options)); return; }
    let credential;
    try {
      credential = await navigator.credentials.create({ publicKey: creationOptions(options.data) });
    } catch (error) {
      say(error.name === "InvalidStateError" ? "This device already holds a passkey for your account."
        : "No passkey was created.");
      return;
    }
    const name = (byId("passkey-name") || {}).value || "";
    const result = await post("/api/passkey/register", { credential: answer(credential), name });
    if (!result.ok) { say(refusal(result)); return; }
    const codes = result.data.recovery_codes;
    if (codes) {  // the account's first factor: its recovery codes, shown this once
      const list = byId("passkey-recovery-codes");
      codes.forEach((code) => { const item = document.createElement("li"); item.textContent = code; list.appendChild(item); });
      byId("passkey-recovery").hidden = false;
      say("Passkey added. Write down these recovery codes now: they are shown only once.");
      return;
    }
    window.location.reload();
  }

  function start() {
    const signIn = byId("passkey-sign-in");
    if (signIn) {
      const next = signIn.dataset.next || "";
      byId("passkey").hidden = false;
      // Autofill: the email field (autocomplete="username webauthn") offers this site's passkeys.
      const autofill = () => {
        if (!PublicKeyCredential.isConditionalMediationAvailable) return;
        PublicKeyCredential.isConditionalMediationAvailable().then((yes) => {
          if (yes) getPasskey("sign-in", "/api/passkey/sign-in", { next }, true);
        });
      };
      signIn.addEventListener("click", () => {
        getPasskey("sign-in", "/api/passkey/sign-in", { next }, false).then((done) => { if (!done) autofill(); });
      });
      autofill();
    }
    const second = byId("passkey-second-step");
    if (second) {
      const next = second.dataset.next || "";
      byId("passkey").hidden = false;
      second.addEventListener("click", () => getPasskey("second-step", "/api/login/mfa", { method: "webauthn", next }, false));
    }
    const form = byId("passkey-register");
    if (form) {
      form.hidden = false;
      form.addEventListener("submit", (event) => { event.preventDefault(); register(form); });
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
