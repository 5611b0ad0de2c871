// Hosted Sessions checkout page (hosted and embedded). Plain script, no dependencies.
// The client secret lives in memory (and, hosted, in this tab's sessionStorage so a reload
// keeps working); it is read from the URL fragment, which browsers never send to servers,
// and removed from the address bar at once. Embedded, the parent page hands it over by
// postMessage. docs/pages.md.
(function () {
  "use strict";

  var root = document.documentElement;
  var MODE = root.getAttribute("data-mode");
  var SESSION_ID = root.getAttribute("data-session-id");
  var PARENT_ORIGIN = root.getAttribute("data-parent-origin") || "";
  // Test mode (the payment simulator): non-card methods are paid with a test token typed in
  // the token field. Outside it the field is not in the page, and only cards are offered
  // here until real wallet and bank buttons come with a real processor (docs/pages.md).
  var TEST_MODE = root.getAttribute("data-test-mode") === "true";
  var API = "/v1/hosted-sessions/" + encodeURIComponent(SESSION_ID);
  var POLL_MS = 2000;
  var STORE_KEY = "hs_secret:" + SESSION_ID;

  var secret = null;
  var config = null;
  var quote = null; // {id, fee, total, method, expiresAt}
  var busy = false;
  var finished = false;
  var pollTimer = null;

  function $(id) { return document.getElementById(id); }

  function money(cents, currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: currency })
        .format(cents / 100);
    } catch (e) {
      return (cents / 100).toFixed(2) + " " + currency;
    }
  }

  // --- the credential ------------------------------------------------------------------

  function validSecret(value) {
    return typeof value === "string" && value.indexOf(SESSION_ID + "_secret_") === 0 &&
      value.length < 200;
  }

  function secretFromFragment() {
    var fragment = decodeURIComponent(window.location.hash.replace(/^#/, ""));
    if (window.location.hash) {
      // Off the address bar and out of history: nothing to copy, share or screenshot.
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    return validSecret(fragment) ? fragment : null;
  }

  function forgetSecret() {
    try { sessionStorage.removeItem(STORE_KEY); } catch (e) { /* storage disabled */ }
  }

  function hostedSecret() {
    var value = secretFromFragment();
    try {
      if (value) sessionStorage.setItem(STORE_KEY, value);
      else value = sessionStorage.getItem(STORE_KEY);
    } catch (e) { /* storage disabled: memory only */ }
    return validSecret(value) ? value : null;
  }

  function toParent(message) {
    if (MODE === "embedded" && PARENT_ORIGIN && window.parent !== window) {
      window.parent.postMessage(message, PARENT_ORIGIN);
    }
  }

  function embeddedSecret(onSecret) {
    var fromFragment = secretFromFragment();
    if (fromFragment) { onSecret(fromFragment); return; }
    if (!PARENT_ORIGIN || window.parent === window) {
      showState("This checkout cannot be shown here",
        "The page embedding it is not allowed by the merchant's settings.");
      return;
    }
    window.addEventListener("message", function (event) {
      if (secret || event.source !== window.parent || event.origin !== PARENT_ORIGIN) return;
      var data = event.data;
      if (data && data.type === "hosted_session.init" && validSecret(data.client_secret)) {
        onSecret(data.client_secret);
      }
    });
    toParent({ type: "hosted_session.ready", session_id: SESSION_ID });
  }

  // --- API -------------------------------------------------------------------------------

  function call(method, path, body) {
    var init = {
      method: method,
      headers: { "Authorization": "Bearer " + secret },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(API + path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return {
          ok: response.ok, status: response.status, data: data || {},
          retryAfter: response.headers.get("Retry-After"),
        };
      });
    }, function () {
      return { ok: false, status: 0, data: { code: "network_error", recoverable: true } };
    });
  }

  // --- rendering -------------------------------------------------------------------------

  function showState(title, text) {
    finished = true;
    stopPolling();
    $("loading").hidden = true;
    $("pay-form").hidden = true;
    $("challenge-form").hidden = true;
    $("state-title").textContent = title;
    $("state-text").textContent = text;
    $("state").hidden = false;
    $("checkout").setAttribute("aria-busy", "false");
    $("state").focus();
  }

  function showExpired() {
    forgetSecret();
    root.setAttribute("data-state", "expired");
    showState("This checkout has expired",
      "Nothing was charged. Return to the merchant to start again.");
    $("footer").hidden = !config;
  }

  function showPaid() {
    forgetSecret();
    root.setAttribute("data-state", "complete");
    showState("Payment complete", "Thank you. This checkout is paid.");
    $("footer").hidden = true;
  }

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  var METHOD_LABELS = { card: "Card", ach: "Bank account (ACH)", apple_pay: "Apple Pay",
    paypal: "PayPal" };
  var AVS = {
    cardholder: ["Name on card", "cc-name", "text"],
    email: ["Email", "email", "email"],
    phone: ["Phone", "tel", "tel"],
    street: ["Street address", "address-line1", "text"],
    street2: ["Apartment, suite (optional)", "address-line2", "text"],
    city: ["City", "address-level2", "text"],
    state: ["State / region", "address-level1", "text"],
    zip: ["ZIP / postal code", "postal-code", "text"],
    country: ["Country", "country", "text"],
  };

  function applyBranding(branding) {
    if (!branding) return;
    if (branding.merchant_display_name) {
      $("merchant-name").textContent = branding.merchant_display_name;
      document.title = "Pay " + branding.merchant_display_name;
    }
    if (branding.logo_url && /^https:\/\//.test(branding.logo_url)) {
      var logo = $("logo");
      logo.src = branding.logo_url;
      logo.hidden = false;
      logo.addEventListener("error", function () { logo.hidden = true; });
    }
    if (branding.accent_color && /^#[0-9A-Fa-f]{6}$/.test(branding.accent_color)) {
      var hex = branding.accent_color;
      var rgb = [1, 3, 5].map(function (i) { return parseInt(hex.substr(i, 2), 16) / 255; })
        .map(function (c) { return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); });
      var luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
      // CSSOM, not a style attribute: allowed under style-src 'self'. Text on the accent
      // takes whichever of black/white contrasts more.
      root.style.setProperty("--accent", hex);
      root.style.setProperty("--on-accent", luminance > 0.179 ? "#000000" : "#ffffff");
    }
  }

  function render(cfg) {
    applyBranding(cfg.branding);
    if (cfg.description) { $("description").textContent = cfg.description; $("description").hidden = false; }
    var items = $("items");
    items.textContent = "";
    cfg.line_items.forEach(function (item) {
      var li = el("li");
      var name = el("span", item.description);
      if (item.quantity > 1) name.appendChild(el("span", " × " + item.quantity, "qty"));
      li.appendChild(name);
      li.appendChild(el("span", money(item.amount * item.quantity, cfg.currency)));
      items.appendChild(li);
    });
    $("total").textContent = money(cfg.amount, cfg.currency);

    var options = $("method-options");
    options.textContent = "";
    var choices = [];
    cfg.saved_methods.forEach(function (m) {
      var label = (m.brand || METHOD_LABELS[m.type] || m.type) + (m.last4 ? " •••• " + m.last4 : "") +
        (m.exp_month ? " (exp " + m.exp_month + "/" + String(m.exp_year).slice(-2) + ")" : "");
      choices.push({ value: "saved:" + m.id, type: m.type, label: "Saved: " + label });
    });
    cfg.allowed_methods.forEach(function (t) {
      if (t !== "card" && !TEST_MODE) return;
      choices.push({ value: t, type: t, label: METHOD_LABELS[t] || t });
    });
    if (!choices.length) {
      showState("Payment unavailable", "None of this checkout's payment methods can be used " +
        "on this page. Please contact the merchant.");
      return false;
    }
    choices.forEach(function (choice, index) {
      var label = el("label");
      var input = el("input");
      input.type = "radio";
      input.name = "method";
      input.value = choice.value;
      input.setAttribute("data-type", choice.type);
      input.id = "method-" + index;
      input.checked = index === 0;
      input.addEventListener("change", onMethodChange);
      label.htmlFor = input.id;
      label.appendChild(input);
      label.appendChild(el("span", choice.label));
      options.appendChild(label);
    });

    var avs = $("avs-inputs");
    avs.textContent = "";
    cfg.required_avs_fields.forEach(function (field) {
      var spec = AVS[field] || [field, "off", "text"];
      var label = el("label", spec[0]);
      label.htmlFor = "avs-" + field;
      var input = el("input");
      input.id = "avs-" + field;
      input.name = field;
      input.type = spec[2];
      input.autocomplete = spec[1];
      input.required = field !== "street2";
      input.setAttribute("data-avs", field);
      avs.appendChild(label);
      avs.appendChild(input);
    });
    $("avs-fields").hidden = cfg.required_avs_fields.length === 0;

    var cancel = $("cancel");
    if (MODE === "embedded") {
      cancel.addEventListener("click", function (event) {
        event.preventDefault();
        toParent({ type: "hosted_session.canceled", session_id: SESSION_ID });
      });
    } else {
      cancel.href = cfg.cancel_url;
    }
    $("footer").hidden = false;
    $("loading").hidden = true;
    $("summary").hidden = false;
    $("pay-form").hidden = false;
    $("checkout").setAttribute("aria-busy", "false");
    onMethodChange();
    return true;
  }

  function selected() {
    var input = document.querySelector("input[name=method]:checked");
    if (!input) return null;
    return { value: input.value, type: input.getAttribute("data-type") };
  }

  function setPayLabel(total) {
    $("pay").textContent = "Pay " + money(total, config.currency);
  }

  function onMethodChange() {
    var method = selected();
    $("card-fields").hidden = !method || method.value !== "card";
    if (TEST_MODE) {
      $("token-fields").hidden = !method || method.value.indexOf("saved:") === 0 ||
        method.value === "card";
    }
    quote = null;
    $("fee-row").hidden = true;
    $("total").textContent = money(config.amount, config.currency);
    setPayLabel(config.amount);
    if (method) requestQuote(method.type);
  }

  function requestQuote(type) {
    return call("POST", "/quote-fee", { payment_method_type: type }).then(function (r) {
      var method = selected();
      if (!r.ok || !method || method.type !== type) {
        if (!r.ok) handleError(r, $("error"));
        return null;
      }
      quote = { id: r.data.id, fee: r.data.fee, total: r.data.total, type: type,
        expiresAt: Date.parse(r.data.expires_at) };
      $("fee").textContent = money(r.data.fee, config.currency);
      $("fee-row").hidden = r.data.fee === 0;
      $("total").textContent = money(r.data.total, config.currency);
      setPayLabel(r.data.total);
      return quote;
    });
  }

  function freshQuote(type) {
    if (quote && quote.type === type && quote.expiresAt - Date.now() > 10000) {
      return Promise.resolve(quote);
    }
    return requestQuote(type);
  }

  // --- errors ----------------------------------------------------------------------------

  var MESSAGES = {
    card_declined: "Your card was declined. Try another card or payment method.",
    insufficient_funds: "The card has insufficient funds. Try another card or payment method.",
    expired_card: "The card has expired. Check the expiry date or use another card.",
    incorrect_cvc: "The security code is incorrect. Check it and try again.",
    processing_error: "The payment could not be processed. Please try again.",
    network_error: "We could not reach the payment processor. Please try again.",
    rate_limited: "Too many attempts. Please wait a moment and try again.",
    duplicate_payment: "This looks like a payment you already made. Nothing more was charged.",
    already_confirmed: "This checkout is already being paid.",
    origin_not_allowed: "This checkout cannot be used from this page.",
    insufficient_scope: "This link cannot be used to pay.",
    challenge_failed: "The code could not be verified.",
    validation_error: "Please check the details and try again.",
  };
  var FIELD_OF = { incorrect_cvc: "card-cvc", expired_card: "card-exp", card_declined: "card-number",
    insufficient_funds: "card-number" };

  function showError(box, text) {
    box.textContent = text;
    box.hidden = false;
    box.focus();
  }

  // Returns true when the shopper may try again.
  function handleError(r, box) {
    var code = r.data.code || "processing_error";
    if (r.status === 410 || code === "session_expired") { showExpired(); return false; }
    if (r.status === 401) {
      showState("This checkout link is not valid", "Return to the merchant to start again.");
      return false;
    }
    var text = MESSAGES[code] || MESSAGES.processing_error;
    if (code === "validation_error" && r.data.message) text = r.data.message;
    if (code === "challenge_failed" && r.data.message) text = r.data.message;
    if (code === "rate_limited" && r.retryAfter) {
      text = "Too many attempts. Try again in " + r.retryAfter + " seconds.";
    }
    var recoverable = r.data.recoverable !== false;
    if (!recoverable && code !== "validation_error") {
      text += " This payment cannot be completed here; please contact the merchant.";
    }
    showError(box, text);
    var field = FIELD_OF[code] && $(FIELD_OF[code]);
    if (field && !field.closest("[hidden]")) field.setAttribute("aria-invalid", "true");
    if (!recoverable && code !== "validation_error") {
      $("pay").disabled = true;
      $("verify").disabled = true;
    }
    return recoverable;
  }

  // --- paying ----------------------------------------------------------------------------

  function paymentMethod(method) {
    if (method.value.indexOf("saved:") === 0) return { type: "saved", id: method.value.slice(6) };
    if (method.value !== "card") return { type: method.type, token: $("method-token").value.trim() };
    var exp = $("card-exp").value.replace(/\s/g, "").split("/");
    var year = parseInt(exp[1], 10);
    return {
      type: "card",
      number: $("card-number").value.replace(/[\s-]/g, ""),
      exp_month: parseInt(exp[0], 10),
      exp_year: year < 100 ? 2000 + year : year,
      cvc: $("card-cvc").value.trim(),
    };
  }

  function localProblem(method) {
    var missing = [];
    document.querySelectorAll("#pay-form input").forEach(function (input) {
      input.removeAttribute("aria-invalid");
    });
    var inputs = [];
    if (method.value === "card") inputs = ["card-number", "card-exp", "card-cvc"].map($);
    document.querySelectorAll("[data-avs]").forEach(function (i) { if (i.required) inputs.push(i); });
    inputs.forEach(function (input) {
      if (!input.value.trim()) { input.setAttribute("aria-invalid", "true"); missing.push(input); }
    });
    if (method.value === "card" && !/^\d{1,2}\/\d{2,4}$/.test($("card-exp").value.replace(/\s/g, ""))) {
      $("card-exp").setAttribute("aria-invalid", "true");
      if (missing.indexOf($("card-exp")) < 0) missing.push($("card-exp"));
    }
    if (!missing.length) return null;
    missing[0].focus();
    var first = document.querySelector("label[for='" + missing[0].id + "']");
    return "Please fill in: " + (first ? first.textContent : "the highlighted fields") + ".";
  }

  function billing() {
    var details = {};
    document.querySelectorAll("[data-avs]").forEach(function (input) {
      if (input.value.trim()) details[input.getAttribute("data-avs")] = input.value.trim();
    });
    return details;
  }

  function setBusy(value) {
    busy = value;
    $("pay").disabled = value;
    $("verify").disabled = value;
    $("checkout").setAttribute("aria-busy", value ? "true" : "false");
  }

  function confirmPayment() {
    var method = selected();
    if (!method || busy || finished) return;
    $("error").hidden = true;
    var problem = localProblem(method);
    if (problem) { showError($("error"), problem); return; }
    setBusy(true);
    freshQuote(method.type).then(function (q) {
      var body = { payment_method: paymentMethod(method), billing_details: billing() };
      if (q) body.quote_id = q.id;
      return call("POST", "/confirm", body);
    }).then(function (r) {
      setBusy(false);
      if (r.ok) { completed(r.data); return; }
      if (r.data.code === "challenge_required") { startChallenge(); return; }
      if (r.data.code === "validation_error" && /quote_id/.test(r.data.message || "")) quote = null;
      handleError(r, $("error"));
    });
  }

  function completed(result) {
    finished = true;
    stopPolling();
    forgetSecret();
    root.setAttribute("data-state", "complete");
    if (MODE === "embedded") {
      toParent({ type: "hosted_session.completed", session_id: SESSION_ID });
      showState("Payment complete", "Thank you. You can close this window.");
      return;
    }
    showState("Payment complete", "Taking you back to the merchant…");
    window.location.assign(result.success_url);
  }

  // --- SMS challenge ---------------------------------------------------------------------

  function startChallenge() {
    $("pay-form").hidden = true;
    $("challenge-form").hidden = false;
    $("challenge-error").hidden = true;
    sendCode();
  }

  function sendCode() {
    setBusy(true);
    return call("POST", "/challenge").then(function (r) {
      setBusy(false);
      if (r.ok) {
        $("challenge-text").textContent = "We sent a 6-digit code by text message to " +
          r.data.phone_hint + ". Enter it below.";
        $("resend").hidden = r.data.resends_left === 0;
        $("challenge-code").value = "";
        $("challenge-code").focus();
        return;
      }
      handleError(r, $("challenge-error"));
    });
  }

  function verifyCode() {
    var code = $("challenge-code").value.replace(/\s/g, "");
    if (busy || finished) return;
    if (!/^\d{6}$/.test(code)) {
      $("challenge-code").setAttribute("aria-invalid", "true");
      showError($("challenge-error"), "Enter the 6-digit code from the text message.");
      return;
    }
    $("challenge-code").removeAttribute("aria-invalid");
    $("challenge-error").hidden = true;
    setBusy(true);
    call("POST", "/challenge/verify", { code: code }).then(function (r) {
      setBusy(false);
      if (r.ok) {
        $("challenge-form").hidden = true;
        $("pay-form").hidden = false;
        confirmPayment();
        return;
      }
      handleError(r, $("challenge-error"));
    });
  }

  // --- polling ---------------------------------------------------------------------------

  function stopPolling() {
    if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
  }

  function poll() {
    pollTimer = setTimeout(function () {
      if (finished) return;
      call("GET", "/config").then(function (r) {
        if (finished) return;
        if (r.status === 410 || (r.ok && r.data.status === "expired")) { showExpired(); return; }
        if (r.ok && r.data.status === "complete" && !busy) { showPaid(); return; }
        poll();
      });
    }, POLL_MS);
  }

  function start(value) {
    secret = value;
    call("GET", "/config").then(function (r) {
      if (!r.ok) { handleError(r, $("error")); if (!finished) showState("This checkout could not be loaded", "Please try again later."); return; }
      config = r.data;
      if (config.status === "expired") { showExpired(); return; }
      if (config.status === "complete") { showPaid(); return; }
      if (!render(config)) return;
      root.setAttribute("data-state", "open");
      poll();
    });
  }

  function init() {
    $("pay-form").addEventListener("submit", function (event) {
      event.preventDefault();
      confirmPayment();
    });
    $("challenge-form").addEventListener("submit", function (event) {
      event.preventDefault();
      verifyCode();
    });
    $("resend").addEventListener("click", function () { $("challenge-error").hidden = true; sendCode(); });
    if (MODE === "embedded") {
      embeddedSecret(start);
      return;
    }
    var value = hostedSecret();
    if (!value) {
      showState("This checkout link is incomplete",
        "Open the payment link the merchant gave you, or return to the merchant to start again.");
      return;
    }
    start(value);
  }

  init();
})();
