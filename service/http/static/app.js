// The drawing page: a canvas to draw on, upload / drop / paste of an image file, and the
// service's answer (digit, ten probabilities, the 28x28 image the model saw, why: the heat map
// of the pixels behind the answer), and a control to correct an answer (POST feedback).
// Plain ES2020, no build step, no third-party code: the page must work with no internet.
// URLs are relative so the page also works behind a reverse proxy under a path prefix.
"use strict";

(() => {
  // The finished drawing asks why too (about 200 more model runs); live updates do not.
  const PREDICT_URL = "predict?include_image=true&explain=true";
  const LIVE_URL = "predict?include_image=true";
  const MODEL_URL = "model";
  const FEEDBACK_URL = "feedback";
  // Pen width as a fraction of the pad's side: about the stroke-to-height ratio of MNIST
  // digits when a person fills most of the pad, so drawings look like what the model learnt.
  const STROKE_FRACTION = 0.07;
  const INK = "#111111";
  const PAPER = "#ffffff";
  // While drawing, ask at most this often (and never with a request still in flight).
  const LIVE_INTERVAL_MS = 350;
  // After a stroke, wait this long for the next one before asking for the full answer: a 4
  // or a 7 with a bar is two strokes, and its first alone is no digit to announce.
  const SETTLE_MS = 300;
  // An answer takes milliseconds; one this late is not coming (a hung proxy, a lost packet).
  const ANSWER_TIMEOUT_MS = 20000;
  // Calibrated: about this share of answers this confident are right. Below it, say so.
  const UNSURE_BELOW = 0.9;
  const UNREACHABLE =
    "Cannot reach the digits service. Check that it is running and your connection, then try again.";
  // The header's model line asks again while the model is loading or the service unreachable:
  // after 5 s, then twice as long each time, at most a minute apart.
  const MODEL_INFO_RETRY_MS = 5000;
  const MODEL_INFO_RETRY_MAX_MS = 60000;
  let modelInfoRetryMs = MODEL_INFO_RETRY_MS;
  const TOO_SLOW = `The service did not answer within ${ANSWER_TIMEOUT_MS / 1000} seconds.`;

  const byId = (id) => document.getElementById(id);
  const pad = byId("pad");
  const ctx = pad.getContext("2d");
  const ui = {
    hint: byId("pad-hint"),
    dropZone: byId("drop-zone"),
    clear: byId("clear"),
    upload: byId("upload"),
    file: byId("file"),
    error: byId("error"),
    result: byId("result"),
    digit: byId("digit"),
    confidence: byId("confidence"),
    announce: byId("announce"),
    bars: byId("bars"),
    seen: byId("seen"),
    seenEmpty: byId("seen-empty"),
    modelInfo: byId("model-info"),
    quick: byId("quick-result"),
    why: byId("why"),
    heatmap: byId("heatmap"),
    whyDigit: byId("why-digit"),
    feedback: byId("feedback"),
    choices: byId("feedback-choices"),
    feedbackStatus: byId("feedback-status"),
  };

  // ---- The pad -------------------------------------------------------------------------

  let stroke = null; // {pointerId, points: [{x, y}]} while a pointer draws
  let hasInk = false;
  let showingUpload = false;
  let lastLiveAt = 0;
  let liveInFlight = false;
  let settling = null; // the timer that asks for the full answer once the strokes pause

  function fillPaper() {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.restore();
  }

  function penStyle() {
    ctx.strokeStyle = INK;
    ctx.fillStyle = INK;
    ctx.lineWidth = Math.max(2, pad.width * STROKE_FRACTION);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  // Backing store = displayed size x devicePixelRatio: crisp strokes on phones, and what is
  // already drawn survives a resize (rotation, window change).
  function fitPadToDisplay() {
    const side = Math.round(pad.getBoundingClientRect().width * (window.devicePixelRatio || 1));
    if (side < 1 || side === pad.width) return;
    const copy = document.createElement("canvas");
    copy.width = pad.width;
    copy.height = pad.height;
    copy.getContext("2d").drawImage(pad, 0, 0);
    // A stroke under way goes on at the new scale, not from its old points (a stray hook).
    const scale = side / pad.width;
    if (stroke) stroke.points = stroke.points.map((p) => ({ x: p.x * scale, y: p.y * scale }));
    pad.width = side;
    pad.height = side;
    fillPaper();
    ctx.drawImage(copy, 0, 0, side, side);
    penStyle();
  }

  function clearPad() {
    fillPaper();
    penStyle();
    hasInk = false;
    showingUpload = false;
    ui.hint.textContent = "Draw one digit here, or drop an image file";
    ui.hint.hidden = false;
  }

  function pointFrom(event) {
    const rect = pad.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * pad.width) / rect.width,
      y: ((event.clientY - rect.top) * pad.height) / rect.height,
    };
  }

  const midpoint = (a, b) => ({ x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 });

  // Smooth strokes: quadratic curves through the midpoints of successive samples, so fast
  // movements draw curves instead of polygons.
  function extendStroke(point) {
    const points = stroke.points;
    points.push(point);
    const n = points.length;
    ctx.beginPath();
    if (n === 1) {
      ctx.arc(point.x, point.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    if (n === 2) {
      const end = midpoint(points[0], points[1]);
      ctx.moveTo(points[0].x, points[0].y);
      ctx.lineTo(end.x, end.y);
    } else {
      const start = midpoint(points[n - 3], points[n - 2]);
      const end = midpoint(points[n - 2], points[n - 1]);
      ctx.moveTo(start.x, start.y);
      ctx.quadraticCurveTo(points[n - 2].x, points[n - 2].y, end.x, end.y);
    }
    ctx.stroke();
  }

  function finishStroke() {
    const points = stroke.points;
    const n = points.length;
    if (n >= 2) {
      const start = midpoint(points[n - 2], points[n - 1]);
      ctx.beginPath();
      ctx.moveTo(start.x, start.y);
      ctx.lineTo(points[n - 1].x, points[n - 1].y);
      ctx.stroke();
    }
    stroke = null;
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    startStroke(event);
  });

  // A stroke begun just off the pad starts where the pressed pointer comes onto it, as on
  // other drawing pads (a pen or finger pressed elsewhere is scrolling, not drawing).
  pad.addEventListener("pointerenter", (event) => {
    if (event.pointerType === "mouse" && event.buttons & 1) startStroke(event);
  });

  function startStroke(event) {
    if (stroke) return;
    event.preventDefault();
    if (showingUpload) clearPad();
    clearTimeout(settling); // another stroke of the same digit
    pad.setPointerCapture(event.pointerId);
    ui.hint.hidden = true;
    hasInk = true;
    stroke = { pointerId: event.pointerId, points: [] };
    extendStroke(pointFrom(event));
  }

  pad.addEventListener("pointermove", (event) => {
    if (!stroke || event.pointerId !== stroke.pointerId) return;
    event.preventDefault();
    // Coalesced events: every sample the device produced, not one per animation frame.
    const samples = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const sample of samples.length ? samples : [event]) extendStroke(pointFrom(sample));
    predictWhileDrawing();
  });

  function endStroke(event) {
    if (!stroke || event.pointerId !== stroke.pointerId) return;
    finishStroke();
    sequence += 1; // live answers still on their way are about fewer strokes
    setState("pending");
    clearTimeout(settling);
    settling = setTimeout(() => predictDrawing(false), SETTLE_MS);
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  // ---- Asking the service --------------------------------------------------------------

  let sequence = 0; // only the newest request may change what is shown
  let lastAsked = null; // {blob, name} of the last full request, for "Try again"

  function padBlob() {
    return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
  }

  function predictWhileDrawing() {
    const now = performance.now();
    if (liveInFlight || now - lastLiveAt < LIVE_INTERVAL_MS) return;
    lastLiveAt = now;
    predictDrawing(true);
  }

  function predictDrawing(live) {
    if (!hasInk) return;
    // Claim the sequence number now, synchronously: an older answer that lands while the
    // PNG is being encoded must not be shown as the answer to the finished drawing.
    const mine = ++sequence;
    if (!live) setState("pending");
    if (live) liveInFlight = true;
    padBlob().then((blob) =>
      send(blob, "drawing.png", mine, live).finally(() => {
        if (live) liveInFlight = false;
      }),
    );
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }

  async function send(blob, name, mine, live) {
    if (!live) lastAsked = { blob, name };
    const body = new FormData();
    body.append("file", blob, name);
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), ANSWER_TIMEOUT_MS);
    let response;
    let data;
    try {
      const url = live ? LIVE_URL : PREDICT_URL;
      response = await fetch(url, { method: "POST", body, signal: timeout.signal });
      data = await readJson(response);
    } catch {
      const why = timeout.signal.aborted ? TOO_SLOW : UNREACHABLE;
      if (mine === sequence && !live) showError("No answer", why, true);
      return;
    } finally {
      clearTimeout(timer);
    }
    if (mine !== sequence) return;
    const requestId = response.headers.get("X-Request-ID");
    if (response.ok && data && Array.isArray(data.probabilities)) {
      showResult(data, live);
      if (live) hideFeedback();
      else offerFeedback(requestId, String(data.digit));
    } else if (!live) {
      // A half-drawn digit may be refused (too little ink): only the final drawing reports.
      showError(...describeFailure(response, data));
      // A refusal after the model ran on the image (not_a_digit) still shows what it saw
      // and why, and can be corrected like an answer.
      if (data && data.normalized_image) {
        showSeen(data, "no digit", true);
        offerFeedback(requestId, "not a digit");
      }
    }
  }

  // Whether "Try again" had the focus when pressed: it goes away while the image is sent
  // again, so the focus waits on the answer's box and moves to the next "Try again" if that
  // one fails too, rather than falling back to the start of the page.
  let retryFocused = false;

  function askAgain() {
    if (!lastAsked) return;
    retryFocused = document.activeElement === byId("try-again");
    if (retryFocused) ui.result.focus();
    const mine = ++sequence;
    ui.error.hidden = true;
    setState("pending");
    send(lastAsked.blob, lastAsked.name, mine, false);
  }

  // The server's message as a sentence: it may end without a full stop.
  const sentence = (text) => {
    const trimmed = text.trim();
    const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
    return /[.!?]$/.test(capital) ? capital : `${capital}.`;
  };

  // [title, message, whether the same image may be sent again] for a refused request.
  function describeFailure(response, data) {
    const message = sentence(
      (data && data.error && data.error.message) ||
        (data && typeof data.detail === "string" && data.detail) ||
        `The service answered HTTP ${response.status} ${response.statusText}`,
    );
    const code = data && data.error && data.error.code;
    if (code === "not_a_digit") {
      // The title says it already; the rest of the message says why (the best guess, its score).
      const why = sentence(message.replace(/^That doesn't look like a digit:\s*/, ""));
      return ["That doesn't look like a digit", `The service reads one digit, 0 to 9. ${why}`, false];
    }
    if (code === "overloaded" || response.status === 429) {
      // 429: a proxy or rate limiter in front of the service; the image itself is fine.
      return ["The service is busy", `${message} Try again in a moment.`, true];
    }
    if (code === "not_ready") return ["The model is still loading", `${message} Try again shortly.`, true];
    if (response.status >= 500 || response.status === 408) {
      return ["The service had a problem", message, true];
    }
    if (response.ok) {
      // A 200 without what was asked for: a captive portal's page, a proxy's answer.
      const what = "Its answer was not the one expected (something between you and the service?).";
      return ["The service had a problem", what, true];
    }
    if (code === "no_ink") return ["Nothing to read here", message, false];
    if (response.status === 413) return ["This image is too large", message, false];
    if (response.status === 415) return ["This kind of file is not read", message, false];
    return ["This image could not be read", message, false];
  }

  // ---- Showing answers -----------------------------------------------------------------

  const barFills = [];
  const barValues = [];
  const barRows = [];

  function buildBars() {
    for (let digit = 0; digit < 10; digit += 1) {
      const row = document.createElement("li");
      row.className = "bar";
      const label = document.createElement("span");
      label.className = "bar-label";
      label.textContent = String(digit);
      const track = document.createElement("span");
      track.className = "bar-track";
      track.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      track.append(fill);
      const value = document.createElement("span");
      value.className = "bar-value";
      row.append(label, track, value);
      ui.bars.append(row);
      barRows.push(row);
      barFills.push(fill);
      barValues.push(value);
    }
  }

  // Two decimals near certainty, and a probability under 1 never shown as 100 %: 0.99968 is
  // "99.97%", as the CLI shows it, not a certainty the calibrated model does not claim.
  const percent = (p) => {
    if (p < 0.99) return `${(p * 100).toFixed(1)}%`;
    const hundredths = Math.min(Math.round(p * 10000), p < 1 ? 9999 : 10000);
    return `${(hundredths / 100).toFixed(2)}%`;
  };

  // ``probabilities`` null: no answer to show (nothing yet, or refused), not ten zeros.
  function showBars(probabilities, best) {
    for (let digit = 0; digit < 10; digit += 1) {
      const p = probabilities ? probabilities[digit] : null;
      barFills[digit].style.width = `${p === null ? 0 : Math.max(0, Math.min(1, p)) * 100}%`;
      barValues[digit].textContent = p === null ? "–" : percent(p);
      barRows[digit].classList.toggle("best", digit === best);
      barRows[digit].setAttribute("aria-label", `${digit}: ${p === null ? "no answer" : percent(p)}`);
    }
  }

  function setState(state) {
    ui.result.dataset.state = state;
    ui.result.setAttribute("aria-busy", state === "pending" ? "true" : "false");
    if (state === "pending") ui.confidence.textContent = "Reading…";
  }

  // ``live``: an answer about a drawing still being drawn, shown but not announced: a screen
  // reader would otherwise read out every half-drawn guess.
  function showResult(data, live) {
    retryFocused = false;
    ui.error.hidden = true;
    const unsure = data.confidence < UNSURE_BELOW;
    ui.digit.textContent = String(data.digit);
    ui.confidence.textContent = unsure
      ? `${percent(data.confidence)} confident: unsure, it may not be a digit`
      : `${percent(data.confidence)} confident`;
    ui.result.classList.toggle("unsure", unsure);
    showBars(data.probabilities, data.digit);
    showSeen(data, String(data.digit));
    if (!live) {
      const caution = unsure ? " Unsure." : "";
      ui.announce.textContent = `Predicted digit ${data.digit}, ${percent(data.confidence)} confident.${caution}`;
    }
    ui.quick.textContent = `Reads as ${data.digit} (${percent(data.confidence)})`;
    setState("done");
  }

  // What the model saw and, when the answer says why, the heat map over it (``refused``: the
  // map is of the best guess the service did not give as an answer).
  function showSeen(data, reading, refused = false) {
    if (data.normalized_image) {
      ui.seen.src = `data:image/png;base64,${data.normalized_image}`;
      ui.seen.alt = `The 28 by 28 pixel image the model read as ${reading}`;
      ui.seen.hidden = false;
      ui.seenEmpty.hidden = true;
    }
    const why = data.explanation;
    if (why && why.overlay) {
      ui.heatmap.src = `data:image/png;base64,${why.overlay}`;
      ui.heatmap.alt = `Heat map: the pixels that pushed the model towards ${why.target}`;
      ui.whyDigit.textContent = refused ? `${why.target}, its best guess` : String(why.target);
      ui.why.hidden = false;
    } else {
      ui.why.hidden = true; // a live answer: the map of the last finished drawing is stale
    }
  }

  function resetResult(text) {
    ui.digit.textContent = "?";
    ui.confidence.textContent = text;
    ui.result.classList.remove("unsure");
    showBars(null, -1);
    ui.seen.hidden = true;
    ui.seen.removeAttribute("src");
    ui.seenEmpty.hidden = false;
    ui.why.hidden = true;
    ui.heatmap.removeAttribute("src");
    ui.quick.textContent = "";
    hideFeedback();
  }

  // ---- Corrections ---------------------------------------------------------------------

  let feedbackEnabled = false; // the service records corrections (GET feedback)
  let correcting = null; // {requestId, reading} of the answer the control is about

  function buildChoices() {
    const labels = [...Array(10).keys()].map(String).concat(["not a digit"]);
    for (const label of labels) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "choice";
      button.textContent = label;
      button.dataset.digit = label === "not a digit" ? "" : label;
      button.setAttribute("aria-pressed", "false");
      button.addEventListener("click", () => correct(button));
      ui.choices.append(button);
    }
  }

  function hideFeedback() {
    correcting = null;
    ui.feedback.hidden = true;
  }

  function offerFeedback(requestId, reading) {
    if (!feedbackEnabled || !requestId) return;
    correcting = { requestId, reading };
    setChoicesEnabled(true, reading);
    for (const button of ui.choices.children) button.setAttribute("aria-pressed", "false");
    ui.feedbackStatus.textContent = "";
    ui.feedbackStatus.classList.remove("done");
    ui.feedback.hidden = false;
  }

  // One correction at a time: a second choice while the first is on its way was answered
  // "already corrected" over the first one's thanks. "It was" what it said is no news.
  function setChoicesEnabled(enabled, reading) {
    for (const choice of ui.choices.children) {
      choice.disabled = !enabled || choice.textContent === reading;
    }
  }

  // What a refused correction means to the person who sent it, and whether to try again.
  function correctionRefused(response, data) {
    const code = data && data.error && data.error.code;
    if (code === "unknown_request") {
      return ["This answer can no longer be corrected: the service keeps answers for a while only (or it restarted meanwhile).", false];
    }
    if (code === "already_corrected") return ["This answer has been corrected already.", false];
    return [describeFailure(response, data)[1], response.status >= 500 || response.status === 429];
  }

  async function correct(button) {
    if (!correcting) return;
    const about = correcting;
    const digit = button.dataset.digit === "" ? null : Number(button.dataset.digit);
    // A disabled button loses the keyboard's focus to the page's start: the status line,
    // which says what became of the choice, takes it.
    const fromKeyboard = ui.choices.contains(document.activeElement);
    setChoicesEnabled(false);
    if (fromKeyboard) ui.feedbackStatus.focus();
    let response;
    let data;
    try {
      response = await fetch(FEEDBACK_URL, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ request_id: about.requestId, digit }),
      });
      data = await readJson(response);
    } catch {
      if (correcting !== about) return;
      ui.feedbackStatus.textContent = UNREACHABLE;
      setChoicesEnabled(true, about.reading);
      return;
    }
    if (correcting !== about) return; // a newer answer replaced this one meanwhile
    if (response.status === 201) {
      button.setAttribute("aria-pressed", "true");
      // "eight" is the one digit name that starts with a vowel sound: "an 8", "a 7".
      const article = digit === 8 ? "an" : "a";
      const said = digit === null ? "not a digit" : `${article} ${digit}`;
      ui.feedbackStatus.textContent = `Thanks: recorded as ${said} for the next training run.`;
      ui.feedbackStatus.classList.add("done");
    } else {
      const [why, mayRetry] = correctionRefused(response, data);
      ui.feedbackStatus.textContent = why;
      setChoicesEnabled(mayRetry, about.reading);
    }
  }

  async function loadFeedbackInfo() {
    try {
      const response = await fetch(FEEDBACK_URL, { headers: { Accept: "application/json" } });
      const data = await readJson(response);
      feedbackEnabled = Boolean(response.ok && data && data.enabled);
    } catch {
      feedbackEnabled = false;
    }
  }

  // ``retry``: the same image may well be read if sent again (busy, unreachable, too slow);
  // a button sends it again, so the drawing is not lost to a passing failure.
  function showError(title, message, retry = false) {
    ui.error.replaceChildren();
    const strong = document.createElement("strong");
    strong.textContent = title;
    const text = document.createElement("span");
    text.textContent = message;
    ui.error.append(strong, text);
    if (retry && lastAsked) {
      const again = document.createElement("button");
      again.type = "button";
      again.id = "try-again";
      again.className = "button secondary";
      again.textContent = "Try again";
      again.addEventListener("click", askAgain);
      ui.error.append(again);
    }
    ui.error.hidden = false;
    if (retryFocused) (byId("try-again") || ui.result).focus(); // a button can take it once shown
    retryFocused = false;
    resetResult("No prediction");
    ui.quick.textContent = title; // beside the pad: on a phone the box may be out of view
    ui.announce.textContent = "";
    setState("error");
  }

  // ---- Files: upload, drop, paste ------------------------------------------------------

  async function previewOnPad(file) {
    fillPaper();
    try {
      const bitmap = await createImageBitmap(file);
      const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
      const w = bitmap.width * scale;
      const h = bitmap.height * scale;
      ctx.imageSmoothingEnabled = scale < 4; // tiny images (28x28) stay crisp when enlarged
      ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
      bitmap.close();
      return true;
    } catch {
      return false; // not an image the browser can show; the service still gets to judge it
    } finally {
      penStyle();
    }
  }

  async function readFile(file) {
    if (!file) return;
    clearTimeout(settling);
    const mine = ++sequence;
    setState("pending");
    ui.error.hidden = true;
    hasInk = false;
    showingUpload = true;
    const shown = await previewOnPad(file);
    ui.hint.hidden = false;
    ui.hint.textContent = shown
      ? `${file.name || "Pasted image"}: draw to start over`
      : `${file.name || "Pasted file"} (no preview): draw to start over`;
    await send(file, file.name || "pasted.png", mine, false);
  }

  ui.upload.addEventListener("click", () => ui.file.click());
  ui.file.addEventListener("change", () => {
    const [file] = ui.file.files;
    readFile(file);
    ui.file.value = ""; // choosing the same file again must read it again
  });

  let dragDepth = 0;
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  ui.dropZone.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth += 1;
    ui.dropZone.classList.add("dragging");
  });
  ui.dropZone.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  ui.dropZone.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) ui.dropZone.classList.remove("dragging");
  });
  ui.dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    ui.dropZone.classList.remove("dragging");
    const { files } = event.dataTransfer;
    readFile(files[0]).then(() => {
      if (files.length > 1) ui.hint.textContent = `Read ${files[0].name}, the first of ${files.length} files`;
    });
  });
  // A file dropped next to the pad would make the browser navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  window.addEventListener("paste", (event) => {
    const file = Array.from(event.clipboardData?.files || []).find((f) =>
      f.type.startsWith("image/"),
    );
    if (file) {
      event.preventDefault();
      readFile(file);
    }
  });

  ui.clear.addEventListener("click", () => {
    sequence += 1; // answers still on their way belong to the old drawing
    clearTimeout(settling);
    lastAsked = null;
    clearPad();
    ui.error.hidden = true;
    resetResult("Draw something to start");
    ui.announce.textContent = "Cleared.";
    setState("idle");
  });

  // ---- The model -----------------------------------------------------------------------

  function chip(text, className) {
    const span = document.createElement("span");
    span.className = `chip ${className}`;
    span.textContent = text;
    return span;
  }

  async function loadModelInfo() {
    try {
      const response = await fetch(MODEL_URL, { headers: { Accept: "application/json" } });
      const data = await readJson(response);
      if (!response.ok || !data || typeof data.name !== "string") {
        const [, message, passing] = describeFailure(response, data);
        ui.modelInfo.textContent = `Model information unavailable: ${message}`;
        if (passing) askModelInfoAgain(); // still loading, busy
        return;
      }
      const accuracy =
        typeof data.test_accuracy === "number"
          ? `test accuracy ${(data.test_accuracy * 100).toFixed(2)}%`
          : "test accuracy not recorded";
      const provider = String(data.provider || "").replace(/ExecutionProvider$/, "");
      ui.modelInfo.replaceChildren(
        chip(`${data.name} v${data.version}`, "model-name"),
        chip(accuracy, "model-accuracy"),
        ...(provider ? [chip(`on ${provider}`, "model-provider")] : []),
      );
    } catch {
      ui.modelInfo.textContent = "Model information unavailable: the service did not answer.";
      askModelInfoAgain();
    }
  }

  function askModelInfoAgain() {
    setTimeout(loadModelInfo, modelInfoRetryMs);
    modelInfoRetryMs = Math.min(2 * modelInfoRetryMs, MODEL_INFO_RETRY_MAX_MS);
  }

  buildBars();
  buildChoices();
  resetResult("Draw something to start");
  clearPad();
  fitPadToDisplay();
  new ResizeObserver(fitPadToDisplay).observe(pad);
  loadModelInfo();
  loadFeedbackInfo();
})();
