#!/usr/bin/env bash
# tests/integration/90_dashboard.sh — the web dashboard (GET /) in a real
# browser: headless Chromium driven over the DevTools protocol by
# tests/integration/browser.py, against a real daemon on loopback. Every
# assertion about the page reads its DOM after the page ran.
#
#   - the page and assets: Content-Types, a CSP without inline scripts or
#     eval, nosniff, no inline <script> or on…= handler in the page; 404/405
#   - overview: a loaded dataset is listed (ready), the memory bar, the
#     running job; an XSS-shaped dataset path and job submission id render
#     as text (no element made from them, nothing run)
#   - jobs table: the live state, the state filter
#   - a running train job's loss chart gains points as steps arrive
#   - a daemon restart: the page shows the outage, reconnects, resumes the
#     event stream with Last-Event-ID (no event twice) and the curves go on
#   - cancel from the page cancels the job
#   - an eval job's results: MPJPE tiles, PCK curve, per-joint chart
#   - the submit form: an unknown field shows the API's error at the field;
#     a valid spec opens the new job's page
#   - with --token-file: without the token the page gets nothing (prompt,
#     401s); a wrong one is refused; with it the page works, every data
#     request and the event stream carry "Authorization: Bearer", and the
#     token is in no URL and no log line
#   - no JS exception, console error or CSP violation on the way
. "$(dirname "$0")/lib.sh"

CHROMIUM=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROMIUM" ]; then
    ok 1 "chromium is installed (scripts/install-deps.sh installs Debian's chromium)"
    done_testing
fi

# ---- the browser ------------------------------------------------------------
coproc BR { TMPDIR=$TDIR CHROMIUM=$CHROMIUM BROWSER_LOG="$TDIR/chromium.log" \
            exec python3 "$LIB_DIR/browser.py" 2>>"$TDIR/browser.err"; }
_bg_pids+=("$BR_PID")
BR_IN=${BR[1]} BR_OUT=${BR[0]}

# br CMD [ARG]: one driver command -> BR_LINE (its JSON answer), BR_VAL (the
# value as compact JSON), BR_STR (the value as raw text); status 0 when ok.
br() {
    printf '%s\n' "$*" >&"$BR_IN"
    if ! IFS= read -r -t 120 BR_LINE <&"$BR_OUT"; then
        BR_LINE='{"ok":false,"error":"no answer from the browser driver"}'
    fi
    BR_VAL=$(jq -c '.value' <<<"$BR_LINE" 2>/dev/null)
    BR_STR=$(jq -r '.value // empty' <<<"$BR_LINE" 2>/dev/null)
    [ "$(jq -r '.ok' <<<"$BR_LINE" 2>/dev/null)" = true ]
}
# bwait NAME SECONDS JS: a TAP point, ok once JS is truthy in the page
bwait() {
    local name=$1 secs=$2 js=$3
    if br wait "$secs $js"; then ok 0 "$name"; else ok 1 "$name"; diag "  waited ${secs}s for: $js" "  last: $BR_LINE" >&2; fi
}
# beval NAME JS: a TAP point, ok when JS evaluates to true
beval() {
    local name=$1 js=$2
    if br eval "$js" && [ "$BR_VAL" = true ]; then ok 0 "$name"; else ok 1 "$name"; diag "  $js" "  -> $BR_LINE" >&2; fi
}
# page problems: exceptions, console errors, CSP violations, and requests the
# daemon refused on their headers for their shape or origin (403, 413, 415,
# 421: the page built them wrong). Another 4xx answer the page expects (401
# without a token, 400 for a bad spec), logged by Chromium as a failed
# resource, is not one.
no_page_errors() {
    br errors
    local bad
    bad=$(jq -r '[.value[] | select((test("^log\\[network/") | not) or test("status of (403|413|415|421) "))] | .[]' <<<"$BR_LINE" 2>/dev/null)
    if [ -z "$bad" ] && [ "$(jq -r .ok <<<"$BR_LINE")" = true ]; then ok 0 "$1"; else ok 1 "$1"; diag "$bad" "$BR_LINE" >&2; fi
}

# ---- daemon and data --------------------------------------------------------
ROOTD=$TDIR/roots
XSS_DIR='<img src=x onerror="window.__xss=1">'
XSS_SUB='<script>window.__xss=2</script><b onmouseover=alert(1)>sub</b>'
mkdir -p "$ROOTD"
"$TRAIND_BIN" synth --out "$ROOTD/$XSS_DIR" --samples 24 --image-size "$IMG" --seed 5 >"$TDIR/synth.log" 2>&1
ok $? "a dataset written under a directory named like markup"

start_daemon --dataset-root "$ROOTD" || bail "daemon did not start"
br_ready=0
IFS= read -r -t 90 BR_LINE <&"$BR_OUT" && [ "$(jq -r .ok <<<"$BR_LINE")" = true ] && br_ready=1
ok $((1 - br_ready)) "headless Chromium is up (driver: $BR_LINE)"
[ "$br_ready" = 1 ] || { diag "$(tail -n 20 "$TDIR/browser.err" "$TDIR/chromium.log" 2>/dev/null)"; done_testing; }

load_synth syn "$NSAMP" "$IMG" 11
ok $? "dataset syn ready"
api POST /v1/datasets "$(jq -nc --arg p "$ROOTD/$XSS_DIR" '{name:"odd", path:$p}')"
is "$STATUS" 202 "dataset 'odd' from the markup-named directory accepted"
is "$(wait_dataset odd 60)" ready "dataset 'odd' ready"

# ---- the page and its assets over plain HTTP --------------------------------
hdr() { curl -s -o "$TDIR/page" -D - "$URL$1" | tr -d '\r'; }
H=$(hdr /)
check "GET / -> 200 text/html" grep -qi '^content-type: text/html; charset=utf-8' <<<"$H"
CSP=$(grep -i '^content-security-policy:' <<<"$H")
check "CSP: scripts from self only, no unsafe-inline/unsafe-eval" \
    bash -c '[[ "$1" == *"script-src '"'self'"';"* && "$1" != *unsafe-inline* && "$1" != *unsafe-eval* && "$1" == *"default-src '"'none'"'"* ]]' _ "$CSP"
check "X-Content-Type-Options: nosniff on the page" grep -qi '^x-content-type-options: nosniff' <<<"$H"
check "the page has no inline script and no on…= handler" \
    bash -c '! grep -Eiq "<script( [^>]*)?>[^<]|<script>|[[:space:]]on[a-z]+=" "$1" && ! grep -Eio "<script[^>]*>" "$1" | grep -vq " src="' _ "$TDIR/page"
check "app.js is text/javascript with nosniff" \
    bash -c 'h=$(curl -s -D - -o /dev/null "$1/assets/app.js" | tr -d "\r"); grep -qi "^content-type: text/javascript" <<<"$h" && grep -qi "^x-content-type-options: nosniff" <<<"$h"' _ "$URL"
check "style.css is text/css, chart.min.js (Chart.js) is served" \
    bash -c 'curl -s -D - -o /dev/null "$1/assets/style.css" | grep -qi "^content-type: text/css" && curl -s "$1/assets/chart.min.js" | head -c 300 | grep -q "Chart.js"' _ "$URL"
expect_error 404 not_found "unknown asset" GET /assets/nothing.js
expect_error 405 method_not_allowed "POST /" POST / '{}'
api GET /v1/status
check "the JSON API answers carry nosniff too" bash -c 'curl -s -D - -o /dev/null "$1/v1/status" | grep -qi "^x-content-type-options: nosniff"' _ "$URL"

# a long train job whose submission id looks like markup
submit "$(train_spec syn 100000 "\"checkpoint_every\":20,\"eval_every\":40,\"submission_id\":$(jq -Rn --arg s "$XSS_SUB" '$s')")"
TJ=$JOB
is "$STATUS" 201 "train job $TJ submitted"
wait_job_state "$TJ" running 60
ok $? "train job running"

# ---- overview -----------------------------------------------------------------
br open "$URL/"
ok $? "page opened"
bwait "overview lists dataset syn as ready" 20 \
    'document.querySelector("#datasets-table tr[data-name=syn][data-state=ready]")'
beval "syn's row shows its samples" \
    "document.querySelector('#datasets-table tr[data-name=syn] td.num').textContent === '$NSAMP'"
bwait "the running job is listed with its progress" 10 \
    "document.querySelector('#running-table tr[data-id=\"$TJ\"] progress')"
bwait "the device memory bar shows the resident datasets" 10 \
    'Number(document.querySelector(".membar .seg-datasets")?.dataset.bytes) > 0'
beval "the markup-named dataset path renders as text" \
    "[...document.querySelectorAll('#datasets-table tr[data-name=odd] td.source')].some(t => t.textContent.includes('$XSS_DIR'))"
beval "…and made no element, ran nothing" \
    'document.querySelectorAll("img[src=x], b[onmouseover]").length === 0 && window.__xss === undefined && document.scripts.length === 4'

# ---- jobs table -----------------------------------------------------------------
br nav "$URL/#/jobs?state=running"
bwait "jobs table (state=running) lists the train job as running" 10 \
    "document.querySelector('#jobs-table tr[data-id=\"$TJ\"][data-state=running]')"
beval "the markup-shaped submission id is text in the table" \
    "document.querySelector('#jobs-table tr[data-id=\"$TJ\"] td.sub').textContent === $(jq -Rn --arg s "$XSS_SUB" '$s') && !document.querySelector('#jobs-table b') && window.__xss === undefined"
br nav "$URL/#/jobs?state=succeeded"
bwait "the state filter hides it (state=succeeded)" 10 \
    "document.querySelector('#f-state').value === 'succeeded' && !document.querySelector('#jobs-table tr[data-id=\"$TJ\"]') && /No jobs/.test(document.querySelector('#jobs').textContent)"

# ---- the job page: live curves ------------------------------------------------------
br nav "$URL/#/jobs/$TJ"
bwait "job page: event stream live" 15 'document.querySelector("#stream-state").dataset.state === "live"'
bwait "the loss chart has points" 20 'Number(document.querySelector("#chart-loss")?.dataset.points) >= 8'
br eval 'Number(document.querySelector("#chart-loss").dataset.points)'; P1=$BR_STR
bwait "the loss chart gains points as steps arrive (from $P1)" 20 \
    "Number(document.querySelector('#chart-loss').dataset.points) >= $P1 + 12"
beval "the loss chart shows loss, loss_joint, loss_pair, loss_conf" \
    '["loss","loss_joint","loss_pair","loss_conf"].every(n => document.querySelector("#chart-loss").dataset.series.split(",").includes(n))'
bwait "lr and grad norm have their charts; validation MPJPE appears" 30 \
    'document.querySelector("#chart-lr") && document.querySelector("#chart-grad_norm") && document.querySelector("#chart-val_mpjpe")'
beval "progress shows step/total and an ETA" \
    '/\d+\/100000 .*ETA \d+:\d\d/.test(document.querySelector("#job-progress").textContent)'
beval "the dtype plan and spec are shown" \
    'document.querySelector("#plan-table").textContent.includes("bf16") && document.querySelector("#spec").textContent.includes("\"steps\": 100000")'
bwait "checkpoints listed with download links" 20 \
    "document.querySelector('#ckpt-table a.dl[href^=\"/v1/checkpoints/\"][download=\"model.safetensors\"]')"
beval "the submission id is text on the job page" \
    "document.querySelector('#job-facts').textContent.includes('<script>window.__xss=2</script>') && window.__xss === undefined"
[ -n "${DASH_SCREENSHOT:-}" ] && br wait "3 false" && br shot "$DASH_SCREENSHOT"

# ---- a daemon restart under the open page ---------------------------------------------
br eval 'Number(document.querySelector("#chart-loss").dataset.lastStep)'; S1=$BR_STR
br eval 'Number(document.querySelector("#job").dataset.lastEventId)'; E1=$BR_STR
stop_daemon TERM
is "$DAEMON_RC" 0 "daemon stopped (step $S1, event $E1 seen by the page)"
bwait "the page shows the daemon unreachable" 20 \
    'document.querySelector("#conn").dataset.state === "down" && document.querySelector("#stream-state").dataset.state === "reconnecting"'
start_daemon --dataset-root "$ROOTD" || bail "daemon did not restart"
bwait "…and reconnects by itself" 30 \
    'document.querySelector("#conn").dataset.state === "live" && document.querySelector("#stream-state").dataset.state === "live"'
bwait "the resumed job's curve goes past where it was (step $S1)" 60 \
    "Number(document.querySelector('#chart-loss').dataset.lastStep) > $S1 + 5"
beval "the event log shows the interruption and the resumed run" \
    '(() => { const t = [...document.querySelectorAll("#event-log li[data-type=state]")].map(l => l.textContent); const i = t.findIndex(x => x.includes("interrupted")); return i >= 0 && t.slice(i).some(x => x.includes("→ running")); })()'
beval "no event twice: the log's ids strictly increase" \
    '(() => { const ids = [...document.querySelectorAll("#event-log li")].map(l => Number(l.dataset.id)); return ids.length > 3 && ids.every((x, i) => i === 0 || x > ids[i - 1]); })()'
br requests
check "the stream was resumed with Last-Event-ID >= $E1" \
    bash -c 'jq -e --argjson e "$2" "[.value[] | select(.url | endswith(\"/events\")) | select(.last_event_id != null) | (.last_event_id | tonumber)] | any(. >= \$e)" <<<"$1"' _ "$BR_LINE" "$E1"

# ---- cancel from the page ---------------------------------------------------------------
bwait "the cancel button is offered" 10 '!document.querySelector("#cancel-btn").hidden'
br eval 'document.querySelector("#cancel-btn").click(), document.querySelector("#cancel-btn").textContent'
is "$BR_STR" "Click again to cancel" "a first click asks for confirmation"
# the second click on the button as it is now: a view re-rendered in between (a
# stream reconnecting) has a fresh, unarmed button, which is armed again first
br eval '(b => { if (b.textContent !== "Click again to cancel") b.click(); b.click(); return true; })(document.querySelector("#cancel-btn"))'
bwait "the page shows the job cancelled" 60 'document.querySelector("#job").dataset.state === "cancelled"'
is "$(job_state "$TJ")" cancelled "the API says cancelled too"
beval "the cancel button is gone, the stream has ended" \
    'document.querySelector("#cancel-btn").hidden && document.querySelector("#stream-state").dataset.state === "ended"'
br requests
# the cancel takes no body: one sent with the page's POST (even "{}") is 413
check "the page's cancel was one bodyless POST, answered 200" \
    jq -e '[.value[] | select(.url | endswith("/cancel"))] | length == 1 and all(.method == "POST" and .status == 200 and .has_body == false)' <<<"$BR_LINE"
beval "…and the page shows no error for it" '!document.querySelector("#job-msg").textContent'
# The eval job below waits for the device the train job holds: were the page's
# cancel lost, that job would stay queued and its page show it so. The checks
# above have failed then; cancel it here so that those below test their own.
[ "$(job_state "$TJ")" = cancelled ] || { api POST "/v1/jobs/$TJ/cancel"; wait_job "$TJ" 120 >/dev/null; }

# ---- an eval job's results ----------------------------------------------------------------
api GET "/v1/checkpoints?job=$TJ"
CK=$(jb '.checkpoints[-1].id // empty')
submit "{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"$CK\",\"batch_size\":16}"; EJ=$JOB
is "$(wait_job "$EJ" 120)" succeeded "eval job $EJ on $CK succeeded"
br nav "$URL/#/jobs/$EJ"
bwait "eval results: MPJPE, PA-MPJPE and the mean-predictor floor in mm" 15 \
    '["#result-mpjpe", "#result-pa-mpjpe", "#result-floor"].every(s => /\d+\.\d\d mm/.test(document.querySelector(s)?.textContent || ""))'
beval "the PCK curve has its 7 thresholds, the per-joint chart its 21 joints" \
    'document.querySelector("#chart-pck").dataset.points === "7" && document.querySelector("#chart-per-joint").dataset.points === "21" && document.querySelectorAll("#chart-per-joint canvas, #chart-pck canvas").length === 2'
beval "the ended job's page replayed its whole stream: state, event log and last id" \
    "document.querySelector('#job').dataset.state === 'succeeded' && document.querySelector('#stream-state').dataset.state === 'ended' && Number(document.querySelector('#job').dataset.lastEventId) === $(sql "SELECT max(id) FROM job_events WHERE job = '$EJ'") && document.querySelectorAll('#event-log li[data-type=state]').length === 3"

# ---- the submit form -----------------------------------------------------------------------
br nav "$URL/#/submit"
bwait "submit form ready with a template naming a loaded dataset" 10 \
    'document.querySelector("#submit-form").dataset.ready && ["syn", "odd"].includes(JSON.parse(document.querySelector("#spec-input").value).dataset)'
br eval '(() => { const t = document.querySelector("#spec-input"); const s = JSON.parse(t.value); s.dataset = "syn"; s.steps = 5; s.optim.lr.bogus_rate = 1; t.value = JSON.stringify(s, null, 2); t.dispatchEvent(new Event("input")); document.querySelector("#submit-btn").click(); return true; })()'
bwait "an unknown nested field: the API's error is shown at that field" 10 \
    '(e => e && /unknown field .optim\.lr\.bogus_rate./.test(e.querySelector(".field-msg").textContent) && e.querySelector(":scope > .k").textContent === "bogus_rate")(document.querySelector("#spec-outline .field-error[data-error=\"optim.lr.bogus_rate\"]"))'
beval "…and above the form with its code" \
    '/HTTP 400 invalid_field at optim\.lr\.bogus_rate/.test(document.querySelector("#submit-error").textContent)'
br eval '(() => { const t = document.querySelector("#spec-input"); t.value = JSON.stringify({type: "debug", dataset: "syn", batches: 1, bogus: true}); document.querySelector("#submit-btn").click(); return true; })()'
bwait "an unknown top-level field likewise" 10 \
    'document.querySelector("#spec-outline .field-error[data-error=bogus] .field-msg")?.textContent.includes("unknown field")'
br eval '(() => { const t = document.querySelector("#spec-input"); t.value = JSON.stringify({type: "debug", dataset: "syn", batches: 1}); document.querySelector("#submit-btn").click(); return true; })()'
bwait "a valid spec opens the new job's page" 10 '/^#\/jobs\/j-\d+$/.test(location.hash) && document.querySelector("#job")'
bwait "…which follows it to succeeded with its debug report" 60 \
    'document.querySelector("#job").dataset.state === "succeeded" && document.querySelector("#debug-activations")'

no_page_errors "no JS exception, console error or CSP violation (no token)"
beval "the CSP refuses an inline script injected into the page" \
    '(() => { const s = document.createElement("script"); s.textContent = "window.__inline = 1"; document.body.append(s); return window.__inline === undefined; })()'
br errors
check "…and Chromium reports the violation" jq -e '.value | any(test("Content Security Policy"))' <<<"$BR_LINE"

# ---- with a token -----------------------------------------------------------------------------
stop_daemon TERM
TOKEN_VALUE="tok-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$TOKEN_VALUE" >"$TDIR/token"
chmod 600 "$TDIR/token"
chmod 600 "$TDIR/token"
start_daemon --dataset-root "$ROOTD" --token-file "$TDIR/token" || bail "daemon with a token did not start"
TOKEN=$TOKEN_VALUE
is "$(wait_dataset syn 60)" ready "syn reloaded after the restart"
check "the page itself needs no token (it holds no data)" \
    bash -c 'test "$(curl -s -o /dev/null -w "%{http_code}" "$1/")" = 200 && test "$(curl -s -o /dev/null -w "%{http_code}" "$1/assets/app.js")" = 200' _ "$URL"
check "data routes still need it; /assets/../ is no way around" \
    bash -c 'test "$(curl -s -o /dev/null -w "%{http_code}" "$1/v1/status")" = 401 && test "$(curl -s --path-as-is -o /dev/null -w "%{http_code}" "$1/assets/../v1/status")" = 401' _ "$URL"

br open "$URL/"
bwait "without the token the page asks for it" 15 \
    '!document.querySelector("#auth").hidden && document.querySelector("#conn").dataset.state === "auth"'
beval "…and shows no data" '!document.querySelector("#datasets-table") && !document.querySelector("#st-version")'
br requests
check "…every data request it made was refused (401)" \
    jq -e '[.value[] | select(.url | contains("/v1/"))] | length > 0 and all(.status == 401 and .auth == null)' <<<"$BR_LINE"
br eval '(() => { document.querySelector("#auth-token").value = "wrong-token"; document.querySelector("#auth-form").requestSubmit(); return true; })()'
bwait "a wrong token is refused" 10 \
    '!document.querySelector("#auth").hidden && /refused/.test(document.querySelector("#auth-error").textContent) && !sessionStorage.getItem("traind.token")'
br clear
br eval "(() => { document.querySelector('#auth-token').value = '$TOKEN_VALUE'; document.querySelector('#auth-form').requestSubmit(); return true; })()"
bwait "with the token the overview lists syn" 15 \
    'document.querySelector("#auth").hidden && document.querySelector("#datasets-table tr[data-name=syn][data-state=ready]")'
beval "the token is kept in sessionStorage, not in the URL" \
    "sessionStorage.getItem('traind.token') === '$TOKEN_VALUE' && !location.href.includes('$TOKEN_VALUE')"
br nav "$URL/#/jobs/$TJ"
bwait "the cancelled job's page loads its record and events" 15 \
    'document.querySelector("#job").dataset.state === "cancelled" && document.querySelector("#stream-state").dataset.state === "ended" && Number(document.querySelector("#chart-loss")?.dataset.points) > 0'
br requests
REQS=$BR_LINE
check "the event stream was read with the bearer token" \
    jq -e --arg a "Bearer $TOKEN_VALUE" '[.value[] | select(.url | endswith("/events"))] | length > 0 and all(.auth == $a and .status == 200)' <<<"$REQS"
check "every data request carried the token and was answered" \
    jq -e --arg a "Bearer $TOKEN_VALUE" '[.value[] | select(.url | contains("/v1/"))] | length > 3 and all(.auth == $a and .status != 401)' <<<"$REQS"
check "the token is in no request URL" bash -c '! jq -r ".value[].url" <<<"$1" | grep -qF "$2"' _ "$REQS" "$TOKEN_VALUE"
check "the token is in no daemon log line" bash -c '! grep -qF "$1" "$2"/daemon*.log' _ "$TOKEN_VALUE" "$TDIR"
no_page_errors "no JS exception, console error or CSP violation (token)"

br quit
done_testing
