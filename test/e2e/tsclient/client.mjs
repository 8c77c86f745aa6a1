#!/usr/bin/env node
// Scenario runner: a real MCP client (@modelcontextprotocol/sdk, Client +
// StreamableHTTPClientTransport) exercising @modelcontextprotocol/server-everything,
// either directly or through mcpgate.
//
// Usage: node client.mjs URL
//
// Prints exactly one JSON line on stdout (the report) and exits 0 when every
// scenario passed, 1 otherwise. Diagnostics go to stderr.
//
// The SDK is resolved from tools/node/node_modules of this repository (or from
// $MCPGATE_NODE_ROOT/node_modules when that is set), never from a global install.
//
// Environment knobs (all optional):
//   MCPGATE_NODE_ROOT            directory holding the package.json/node_modules to load the SDK from
//   MCPGATE_E2E_STEP_TIMEOUT_MS  per-scenario timeout (default 20000)
//   MCPGATE_E2E_TIMEOUT_MS       whole-run watchdog (default 150000)

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeRoot = process.env.MCPGATE_NODE_ROOT || path.resolve(here, '..', '..', '..', 'tools', 'node');
const requireFromRoot = createRequire(path.join(nodeRoot, 'package.json'));

let sdk;
try {
    sdk = {
        ...requireFromRoot('@modelcontextprotocol/sdk/client/index.js'),
        ...requireFromRoot('@modelcontextprotocol/sdk/client/streamableHttp.js'),
        ...requireFromRoot('@modelcontextprotocol/sdk/types.js')
    };
} catch (err) {
    process.stderr.write(`client.mjs: cannot load @modelcontextprotocol/sdk from ${nodeRoot}: ${err && err.message}\n`);
    process.exit(3);
}
const {
    Client,
    StreamableHTTPClientTransport,
    CreateMessageRequestSchema,
    ElicitRequestSchema,
    ListRootsRequestSchema,
    LoggingMessageNotificationSchema,
    ResourceUpdatedNotificationSchema,
    ToolListChangedNotificationSchema,
    SUPPORTED_PROTOCOL_VERSIONS
} = sdk;

const url = process.argv[2];
if (!url) {
    process.stderr.write('usage: node client.mjs URL\n');
    process.exit(2);
}

const STEP_TIMEOUT_MS = Number(process.env.MCPGATE_E2E_STEP_TIMEOUT_MS) || 20000;
const OVERALL_TIMEOUT_MS = Number(process.env.MCPGATE_E2E_TIMEOUT_MS) || 150000;
// Per-request timeout handed to the SDK; kept below the scenario timeout so that a
// stuck request fails with the SDK's own RequestTimeout error first.
const REQUEST_TIMEOUT_MS = Math.max(1000, STEP_TIMEOUT_MS - 2000);

const ROOT_URI = 'file:///tmp/mcpgate-e2e-root';
const ROOT_NAME = 'mcpgate-e2e-root';
const SAMPLING_MODEL = 'mcpgate-e2e-model';

// ---------------------------------------------------------------------------
// Report state
// ---------------------------------------------------------------------------

const report = {
    ok: false,
    url,
    sessionId: '',
    protocolVersion: '',
    serverInfo: null,
    scenarios: [],
    http: {
        // Status of each GET (standalone SSE stream) the transport opened.
        getStatuses: [],
        // Status of the DELETE that terminated the session (0 = never sent).
        deleteStatus: 0,
        // Status of a POST with the terminated session id (0 = never sent).
        afterDeleteStatus: 0,
        // Every distinct Mcp-Session-Id response header value seen.
        sessionIds: [],
        // Content types of responses to POSTs carrying requests.
        postContentTypes: []
    },
    // method -> where each message carrying it arrived: "GET" (standalone stream)
    // or "POST <method of the request that opened the stream>".
    streams: {},
    // Transport/protocol errors reported by the SDK (informational).
    errors: []
};

const received = {
    progress: [],
    logs: [],
    resourceUpdates: [],
    toolListChanged: 0
};
const calls = {
    sampling: [],
    elicitation: [],
    roots: 0
};

function recordStream(method, origin) {
    if (!method) return;
    const list = (report.streams[method] ||= []);
    if (list.length < 50) list.push(origin);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

class AssertionError extends Error {}

function assert(cond, msg) {
    if (!cond) throw new AssertionError(msg);
}

function errText(err) {
    if (err === undefined || err === null) return String(err);
    if (err instanceof Error) {
        const code = err.code !== undefined ? ` (code ${err.code})` : '';
        const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
        return `${err.message}${code}${cause}`;
    }
    return typeof err === 'string' ? err : JSON.stringify(err);
}

function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

async function waitFor(predicate, ms, what) {
    const deadline = Date.now() + ms;
    for (;;) {
        const v = predicate();
        if (v) return v;
        if (Date.now() >= deadline) throw new AssertionError(`timed out after ${ms}ms waiting for ${what}`);
        await sleep(20);
    }
}

function texts(result) {
    return (result?.content || []).filter(c => c.type === 'text').map(c => c.text);
}

function text(result) {
    return texts(result).join('\n');
}

const reqOpts = (extra = {}) => ({ timeout: REQUEST_TIMEOUT_MS, ...extra });

async function scenario(name, fn, timeoutMs = STEP_TIMEOUT_MS) {
    const started = Date.now();
    let ok = false;
    let detail;
    try {
        const d = await withTimeout(Promise.resolve().then(fn), timeoutMs, `scenario ${name}`);
        ok = true;
        detail = d === undefined ? 'ok' : d;
    } catch (err) {
        detail = errText(err);
    }
    const entry = { name, ok, detail: String(detail), durationMs: Date.now() - started };
    report.scenarios.push(entry);
    process.stderr.write(`client.mjs: ${ok ? 'PASS' : 'FAIL'} ${name} (${entry.durationMs}ms): ${entry.detail}\n`);
    return ok;
}

// ---------------------------------------------------------------------------
// Tracing fetch: records HTTP-level facts and which stream each message used.
// ---------------------------------------------------------------------------

function requestMethodOf(body) {
    if (typeof body !== 'string') return undefined;
    try {
        const parsed = JSON.parse(body);
        const msgs = Array.isArray(parsed) ? parsed : [parsed];
        const req = msgs.find(m => m && typeof m.method === 'string' && m.id !== undefined);
        return req ? req.method : undefined;
    } catch {
        return undefined;
    }
}

async function sniffSse(stream, origin) {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    const flushEvent = block => {
        const data = block
            .split('\n')
            .filter(l => l.startsWith('data:'))
            .map(l => l.slice(5).replace(/^ /, ''))
            .join('\n');
        if (!data.trim()) return;
        try {
            const parsed = JSON.parse(data);
            for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
                if (m && typeof m.method === 'string') recordStream(m.method, origin);
            }
        } catch {
            // not JSON; ignore
        }
    };
    try {
        for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value.replace(/\r\n?/g, '\n');
            let idx;
            while ((idx = buf.indexOf('\n\n')) >= 0) {
                flushEvent(buf.slice(0, idx));
                buf = buf.slice(idx + 2);
            }
        }
    } catch {
        // aborted or disconnected: the SDK's branch reports that
    }
}

async function tracingFetch(input, init) {
    const method = String(init?.method || 'GET').toUpperCase();
    const reqMethod = method === 'POST' ? requestMethodOf(init?.body) : undefined;
    const res = await fetch(input, init);
    const sid = res.headers.get('mcp-session-id');
    if (sid && !report.http.sessionIds.includes(sid)) report.http.sessionIds.push(sid);
    if (method === 'GET') report.http.getStatuses.push(res.status);
    if (method === 'DELETE') report.http.deleteStatus = res.status;
    const ct = (res.headers.get('content-type') || '').toLowerCase();
    if (method === 'POST' && reqMethod) {
        const essence = ct.split(';')[0].trim();
        if (!report.http.postContentTypes.includes(essence)) report.http.postContentTypes.push(essence);
    }
    if (res.ok && res.body && ct.startsWith('text/event-stream')) {
        const [mine, theirs] = res.body.tee();
        sniffSse(mine, method === 'GET' ? 'GET' : `POST ${reqMethod ?? '?'}`);
        return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
    }
    return res;
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

const client = new Client(
    { name: 'mcpgate-e2e-tsclient', version: '1.0.0' },
    {
        capabilities: {
            sampling: {},
            elicitation: { form: {} },
            roots: { listChanged: true }
        }
    }
);
client.onerror = err => {
    if (report.errors.length < 50) report.errors.push(errText(err));
};

client.setRequestHandler(CreateMessageRequestSchema, async (request, extra) => {
    const msgs = request.params.messages || [];
    const prompt = msgs
        .map(m => (m.content && m.content.type === 'text' ? m.content.text : ''))
        .join('\n');
    const token = (prompt.match(/token=([A-Za-z0-9_-]+)/) || [])[1] || 'none';
    calls.sampling.push({ prompt, token, requestId: extra.requestId, maxTokens: request.params.maxTokens });
    // A little jitter so that concurrent sampling requests complete out of order.
    await sleep(token.endsWith('-a') ? 150 : 10);
    return {
        role: 'assistant',
        model: SAMPLING_MODEL,
        stopReason: 'endTurn',
        content: { type: 'text', text: `mcpgate-sampled answer token=${token}` }
    };
});

const ELICIT_ANSWER = {
    name: 'Ada Lovelace',
    check: true,
    email: 'ada@example.com',
    homepage: 'https://example.com/ada',
    birthdate: '1815-12-10',
    integer: 7,
    number: 12.5,
    untitledSingleSelectEnum: 'Joey',
    untitledMultipleSelectEnum: ['Piano'],
    titledSingleSelectEnum: 'hero-2',
    titledMultipleSelectEnum: ['fish-3'],
    legacyTitledEnum: 'pet-2'
};

client.setRequestHandler(ElicitRequestSchema, async (request, extra) => {
    calls.elicitation.push({
        message: request.params.message,
        mode: request.params.mode,
        properties: Object.keys(request.params.requestedSchema?.properties || {}),
        requestId: extra.requestId
    });
    return { action: 'accept', content: { ...ELICIT_ANSWER } };
});

client.setRequestHandler(ListRootsRequestSchema, async () => {
    calls.roots++;
    return { roots: [{ uri: ROOT_URI, name: ROOT_NAME }] };
});

client.setNotificationHandler(LoggingMessageNotificationSchema, n => {
    if (received.logs.length < 500) received.logs.push(n.params);
});
client.setNotificationHandler(ResourceUpdatedNotificationSchema, n => {
    received.resourceUpdates.push(n.params);
});
client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    received.toolListChanged++;
});

const transport = new StreamableHTTPClientTransport(new URL(url), {
    fetch: tracingFetch,
    // Fail fast instead of retrying a broken GET stream for a long time.
    reconnectionOptions: {
        initialReconnectionDelay: 500,
        maxReconnectionDelay: 2000,
        reconnectionDelayGrowFactor: 1.5,
        maxRetries: 2
    }
});

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

const EXPECTED_TOOLS = [
    'echo',
    'get-sum',
    'trigger-long-running-operation',
    'trigger-sampling-request',
    'trigger-elicitation-request',
    'get-roots-list',
    'toggle-subscriber-updates'
];

async function scenarioConnect() {
    await client.connect(transport, reqOpts());
    report.sessionId = transport.sessionId || '';
    report.protocolVersion = transport.protocolVersion || '';
    report.serverInfo = client.getServerVersion() || null;
    assert(report.sessionId, 'no Mcp-Session-Id was assigned by the server');
    assert(
        SUPPORTED_PROTOCOL_VERSIONS.includes(report.protocolVersion),
        `negotiated protocol version ${JSON.stringify(report.protocolVersion)} is not one the SDK supports`
    );
    const caps = client.getServerCapabilities() || {};
    assert(caps.tools, 'server did not advertise tools');
    assert(caps.prompts, 'server did not advertise prompts');
    assert(caps.resources && caps.resources.subscribe, 'server did not advertise resources.subscribe');
    assert(caps.logging, 'server did not advertise logging');
    return `session ${report.sessionId}, protocol ${report.protocolVersion}, server ${JSON.stringify(report.serverInfo)}`;
}

async function scenarioGetStream() {
    // The SDK opens the standalone GET stream right after notifications/initialized;
    // server-initiated messages (roots/list, resources/updated, logs) need it.
    await waitFor(() => report.http.getStatuses.length > 0, 5000, 'the standalone GET SSE stream to be opened');
    assert(report.http.getStatuses[0] === 200, `GET stream answered ${report.http.getStatuses[0]}, want 200`);
    return 'GET stream open (200)';
}

async function scenarioSessionHeader() {
    // Every response that carried Mcp-Session-Id must carry the same one.
    assert(report.http.sessionIds.length === 1, `saw ${report.http.sessionIds.length} distinct Mcp-Session-Id values: ${JSON.stringify(report.http.sessionIds)}`);
    assert(report.http.sessionIds[0] === report.sessionId, 'Mcp-Session-Id header differs from the transport session id');
    return `single session id ${report.sessionId}`;
}

async function scenarioPing() {
    const res = await client.ping(reqOpts());
    assert(res && typeof res === 'object', `ping returned ${JSON.stringify(res)}`);
    return 'pong';
}

async function scenarioToolsList() {
    // The conditional tools (sampling, elicitation, roots) are registered by the
    // server when it processes notifications/initialized; retry briefly in case a
    // proxy delivered tools/list to the server first.
    let names = [];
    let attempts = 0;
    const deadline = Date.now() + 5000;
    for (;;) {
        attempts++;
        const res = await client.listTools({}, reqOpts());
        names = (res.tools || []).map(t => t.name);
        const missing = EXPECTED_TOOLS.filter(n => !names.includes(n));
        if (missing.length === 0) break;
        if (Date.now() > deadline) throw new AssertionError(`tools missing after ${attempts} attempts: ${missing.join(', ')} (have ${names.join(', ')})`);
        await sleep(200);
    }
    const echo = (await client.listTools({}, reqOpts())).tools.find(t => t.name === 'echo');
    assert(echo && echo.inputSchema && echo.inputSchema.properties && echo.inputSchema.properties.message, 'echo tool has no message input schema');
    return `${names.length} tools after ${attempts} attempt(s)`;
}

async function scenarioEcho() {
    const message = `hello from mcpgate e2e ${randomUUID()} — ünïcödé ✓ "quotes" \\ back\\slash`;
    const res = await client.callTool({ name: 'echo', arguments: { message } }, undefined, reqOpts());
    assert(!res.isError, `echo returned isError: ${text(res)}`);
    const got = text(res);
    assert(got === `Echo: ${message}`, `echo text mismatch: got ${JSON.stringify(got)}`);
    return 'echo text matches input';
}

async function scenarioGetSum() {
    const res = await client.callTool({ name: 'get-sum', arguments: { a: 19, b: 23.5 } }, undefined, reqOpts());
    assert(!res.isError, `get-sum returned isError: ${text(res)}`);
    const got = text(res);
    assert(got === 'The sum of 19 and 23.5 is 42.5.', `unexpected get-sum text ${JSON.stringify(got)}`);
    return got;
}

async function scenarioProgress() {
    const steps = 4;
    const duration = 2;
    const seen = [];
    const res = await client.callTool(
        { name: 'trigger-long-running-operation', arguments: { duration, steps } },
        undefined,
        reqOpts({
            resetTimeoutOnProgress: true,
            onprogress: p => seen.push(p)
        })
    );
    assert(!res.isError, `long-running op returned isError: ${text(res)}`);
    const got = text(res);
    assert(
        got === `Long running operation completed. Duration: ${duration} seconds, Steps: ${steps}.`,
        `unexpected completion text ${JSON.stringify(got)}`
    );
    assert(seen.length > 0, 'no progress notifications received');
    assert(seen.length === steps, `got ${seen.length} progress notifications, want ${steps}: ${JSON.stringify(seen)}`);
    for (let i = 1; i < seen.length; i++) {
        assert(seen[i].progress > seen[i - 1].progress, `progress not increasing: ${JSON.stringify(seen)}`);
    }
    assert(seen.every(p => p.total === steps), `progress total not ${steps}: ${JSON.stringify(seen)}`);
    assert(seen[seen.length - 1].progress === steps, `last progress ${seen[seen.length - 1].progress}, want ${steps}`);
    received.progress.push(...seen);
    return `${seen.length} progress notifications: ${seen.map(p => `${p.progress}/${p.total}`).join(' ')}`;
}

async function samplingCall(token) {
    const before = calls.sampling.filter(c => c.token === token).length;
    const res = await client.callTool(
        { name: 'trigger-sampling-request', arguments: { prompt: `please answer token=${token}`, maxTokens: 64 } },
        undefined,
        reqOpts()
    );
    assert(!res.isError, `sampling tool returned isError: ${text(res)}`);
    const mine = calls.sampling.filter(c => c.token === token);
    assert(mine.length === before + 1, `sampling handler invoked ${mine.length - before} times for token ${token}, want 1`);
    const call = mine[mine.length - 1];
    assert(call.prompt.includes(`please answer token=${token}`), `sampling request did not carry the prompt: ${JSON.stringify(call.prompt)}`);
    assert(call.maxTokens === 64, `sampling request maxTokens ${call.maxTokens}, want 64`);
    const got = text(res);
    assert(got.includes(`mcpgate-sampled answer token=${token}`), `tool result lacks the sampling answer: ${JSON.stringify(got)}`);
    assert(got.includes(SAMPLING_MODEL), `tool result lacks the sampling model: ${JSON.stringify(got)}`);
    return got;
}

async function scenarioSampling() {
    const token = `s${randomUUID().slice(0, 8)}`;
    await samplingCall(token);
    return `sampling handler invoked once; answer for token ${token} relayed into the tool result`;
}

async function scenarioElicitation() {
    const before = calls.elicitation.length;
    const res = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} }, undefined, reqOpts());
    assert(!res.isError, `elicitation tool returned isError: ${text(res)}`);
    assert(calls.elicitation.length === before + 1, `elicitation handler invoked ${calls.elicitation.length - before} times, want 1`);
    const call = calls.elicitation[calls.elicitation.length - 1];
    assert(call.properties.includes('name') && call.properties.includes('email'), `requestedSchema lacks fields: ${call.properties.join(',')}`);
    const got = text(res);
    assert(got.includes('User provided the requested information'), `tool result does not report acceptance: ${JSON.stringify(got)}`);
    assert(got.includes(`- Name: ${ELICIT_ANSWER.name}`), `tool result lacks the elicited name: ${JSON.stringify(got)}`);
    assert(got.includes(`- Email: ${ELICIT_ANSWER.email}`), `tool result lacks the elicited email`);
    assert(got.includes(`- Favorite Integer: ${ELICIT_ANSWER.integer}`), `tool result lacks the elicited integer`);
    assert(got.includes('"action": "accept"'), 'raw result lacks action accept');
    return `elicitation answered (${call.properties.length} fields requested) and echoed back`;
}

async function scenarioRoots() {
    // server-everything asks for roots on its own ~350ms after initialization
    // (a server-initiated request not tied to any client request). get-roots-list
    // re-requests them if it has none yet.
    const initial = calls.roots;
    const res = await client.callTool({ name: 'get-roots-list', arguments: {} }, undefined, reqOpts());
    assert(!res.isError, `get-roots-list returned isError: ${text(res)}`);
    const got = text(res);
    assert(calls.roots >= 1, 'roots/list handler was never invoked');
    assert(got.includes(ROOT_URI) && got.includes(ROOT_NAME), `get-roots-list lacks our root: ${JSON.stringify(got)}`);
    assert(got.includes('(1 total)'), `get-roots-list should report exactly 1 root: ${JSON.stringify(got)}`);
    // A roots list_changed notification makes the server ask again.
    const before = calls.roots;
    await client.sendRootsListChanged();
    await waitFor(() => calls.roots > before, 5000, 'roots/list after notifications/roots/list_changed');
    return `roots/list answered ${calls.roots} time(s) (${initial} before the tool call); root relayed back`;
}

async function scenarioResourcesList() {
    const res = await client.listResources({}, reqOpts());
    const uris = (res.resources || []).map(r => r.uri);
    const want = 'demo://resource/static/document/features.md';
    assert(uris.includes(want), `resources/list lacks ${want}: ${JSON.stringify(uris)}`);
    const feat = res.resources.find(r => r.uri === want);
    assert(feat.mimeType === 'text/markdown', `features.md mimeType ${feat.mimeType}`);
    const tpl = await client.listResourceTemplates({}, reqOpts());
    const tplUris = (tpl.resourceTemplates || []).map(t => t.uriTemplate);
    assert(tplUris.includes('demo://resource/dynamic/text/{resourceId}'), `templates lack the dynamic text template: ${JSON.stringify(tplUris)}`);
    assert(tplUris.includes('demo://resource/dynamic/blob/{resourceId}'), `templates lack the dynamic blob template: ${JSON.stringify(tplUris)}`);
    return `${uris.length} resources, ${tplUris.length} templates`;
}

async function scenarioResourcesRead() {
    const doc = await client.readResource({ uri: 'demo://resource/static/document/features.md' }, reqOpts());
    const docText = doc.contents?.[0]?.text || '';
    assert(doc.contents?.[0]?.uri === 'demo://resource/static/document/features.md', 'static read returned the wrong uri');
    assert(docText.includes('# Everything Server - Features'), `static document content unexpected: ${JSON.stringify(docText.slice(0, 80))}`);

    const dyn = await client.readResource({ uri: 'demo://resource/dynamic/text/7' }, reqOpts());
    const dynText = dyn.contents?.[0]?.text || '';
    assert(dynText.startsWith('Resource 7: This is a plaintext resource'), `dynamic text content unexpected: ${JSON.stringify(dynText)}`);

    const blob = await client.readResource({ uri: 'demo://resource/dynamic/blob/3' }, reqOpts());
    const b64 = blob.contents?.[0]?.blob || '';
    const decoded = Buffer.from(b64, 'base64').toString('utf8');
    assert(decoded.startsWith('Resource 3: This is a base64 blob'), `blob content unexpected: ${JSON.stringify(decoded)}`);
    return `static doc (${docText.length} chars), dynamic text and blob read`;
}

async function scenarioPromptsList() {
    const res = await client.listPrompts({}, reqOpts());
    const names = (res.prompts || []).map(p => p.name);
    for (const want of ['simple-prompt', 'args-prompt', 'completable-prompt', 'resource-prompt']) {
        assert(names.includes(want), `prompts/list lacks ${want}: ${JSON.stringify(names)}`);
    }
    const args = res.prompts.find(p => p.name === 'args-prompt');
    const argNames = (args.arguments || []).map(a => `${a.name}${a.required ? '*' : ''}`);
    assert(argNames.includes('city*') && argNames.includes('state'), `args-prompt arguments unexpected: ${argNames.join(',')}`);
    return `${names.length} prompts`;
}

async function scenarioPromptsGet() {
    const simple = await client.getPrompt({ name: 'simple-prompt' }, reqOpts());
    const simpleText = simple.messages?.[0]?.content?.text;
    assert(simpleText === 'This is a simple prompt without arguments.', `simple-prompt text ${JSON.stringify(simpleText)}`);
    const withArgs = await client.getPrompt({ name: 'args-prompt', arguments: { city: 'Lisbon', state: 'Estremadura' } }, reqOpts());
    const argsText = withArgs.messages?.[0]?.content?.text;
    assert(argsText === "What's weather in Lisbon, Estremadura?", `args-prompt text ${JSON.stringify(argsText)}`);
    assert(withArgs.messages[0].role === 'user', 'args-prompt message role is not user');
    return 'simple-prompt and args-prompt rendered';
}

async function scenarioLogging() {
    const res = await client.setLoggingLevel('debug', reqOpts());
    assert(res && typeof res === 'object', `logging/setLevel returned ${JSON.stringify(res)}`);
    return 'level set to debug';
}

async function scenarioSubscribe() {
    const uri = `demo://resource/dynamic/text/${1000 + Math.floor(Math.random() * 1e6)}`;
    const logsBefore = received.logs.length;
    await client.subscribeResource({ uri }, reqOpts());
    // The server acknowledges a subscription with a log message (standalone stream).
    await waitFor(
        () => received.logs.slice(logsBefore).some(l => typeof l.data === 'string' && l.data.includes(`URI: ${uri}`)),
        5000,
        `the subscribe acknowledgement log message for ${uri}`
    );
    const on = await client.callTool({ name: 'toggle-subscriber-updates', arguments: {} }, undefined, reqOpts());
    const onText = text(on);
    assert(onText.startsWith('Started simulated resource updated notifications'), `toggle on: ${JSON.stringify(onText)}`);
    try {
        const update = await waitFor(
            () => received.resourceUpdates.find(u => u.uri === uri),
            12000,
            `notifications/resources/updated for ${uri}`
        );
        assert(update.uri === uri, 'update for the wrong uri');
    } finally {
        // Turn the 5s update interval off again (best effort if the wait failed).
        const off = await client.callTool({ name: 'toggle-subscriber-updates', arguments: {} }, undefined, reqOpts());
        const offText = text(off);
        assert(offText.startsWith('Stopped simulated resource updates'), `toggle off: ${JSON.stringify(offText)}`);
    }
    const foreign = received.resourceUpdates.filter(u => u.uri !== uri);
    assert(foreign.length === 0, `updates for URIs never subscribed: ${JSON.stringify(foreign)}`);
    await client.unsubscribeResource({ uri }, reqOpts());
    return `resources/updated received for ${uri} (${received.resourceUpdates.length} update(s))`;
}

async function scenarioConcurrent() {
    // Interleaved in-flight requests, including two that each trigger a
    // server->client sampling request: every answer must reach its own caller.
    const n = randomUUID().slice(0, 6);
    const echoes = [1, 2, 3, 4].map(i => `concurrent-${n}-${i}`);
    const tokA = `c${n}-a`;
    const tokB = `c${n}-b`;
    const results = await Promise.all([
        ...echoes.map(message => client.callTool({ name: 'echo', arguments: { message } }, undefined, reqOpts())),
        samplingCall(tokA),
        samplingCall(tokB),
        client.callTool({ name: 'get-sum', arguments: { a: 1, b: 2 } }, undefined, reqOpts())
    ]);
    echoes.forEach((message, i) => {
        const got = text(results[i]);
        assert(got === `Echo: ${message}`, `concurrent echo ${i} got ${JSON.stringify(got)}`);
    });
    const [sa, sb] = [results[4], results[5]];
    assert(sa.includes(`token=${tokA}`) && !sa.includes(`token=${tokB}`), 'sampling result A mixed up');
    assert(sb.includes(`token=${tokB}`) && !sb.includes(`token=${tokA}`), 'sampling result B mixed up');
    assert(text(results[6]) === 'The sum of 1 and 2 is 3.', `concurrent get-sum got ${JSON.stringify(text(results[6]))}`);
    return '4 echoes, 2 samplings and 1 sum in flight together, each answered correctly';
}

async function scenarioErrors() {
    const tool = await client.callTool({ name: 'mcpgate-no-such-tool', arguments: {} }, undefined, reqOpts());
    assert(tool.isError === true, 'unknown tool did not yield isError');
    assert(text(tool).includes('mcpgate-no-such-tool'), `unknown tool error text: ${JSON.stringify(text(tool))}`);

    let promptErr;
    try {
        await client.getPrompt({ name: 'mcpgate-no-such-prompt' }, reqOpts());
    } catch (err) {
        promptErr = err;
    }
    assert(promptErr, 'unknown prompt did not fail');
    assert(promptErr.code === -32602, `unknown prompt error code ${promptErr.code}, want -32602 (${errText(promptErr)})`);
    assert(String(promptErr.message).includes('mcpgate-no-such-prompt'), `unknown prompt message: ${promptErr.message}`);

    let methodErr;
    try {
        await client.request({ method: 'mcpgate/no-such-method', params: {} }, sdk.EmptyResultSchema, reqOpts());
    } catch (err) {
        methodErr = err;
    }
    assert(methodErr, 'unknown method did not fail');
    assert(methodErr.code === -32601, `unknown method error code ${methodErr.code}, want -32601 (${errText(methodErr)})`);
    return 'tool isError, prompt -32602 and method -32601 relayed';
}

async function scenarioTerminate() {
    const sid = transport.sessionId;
    assert(sid, 'no session to terminate');
    await transport.terminateSession();
    const st = report.http.deleteStatus;
    assert(st >= 200 && st < 300, `DELETE answered ${st}, want 2xx`);
    assert(transport.sessionId === undefined, 'transport still holds a session id after DELETE');
    // The terminated session must be gone: the spec says 404; server-everything
    // itself answers 400 for an unknown session id.
    const res = await withTimeout(
        fetch(url, {
            method: 'POST',
            headers: {
                'content-type': 'application/json',
                accept: 'application/json, text/event-stream',
                'mcp-session-id': sid,
                'mcp-protocol-version': report.protocolVersion
            },
            body: JSON.stringify({ jsonrpc: '2.0', id: 'after-delete', method: 'ping' })
        }),
        5000,
        'POST after DELETE'
    );
    await res.body?.cancel();
    report.http.afterDeleteStatus = res.status;
    assert(res.status === 404 || res.status === 400, `POST with the terminated session id answered ${res.status}, want 404 (or 400)`);
    return `DELETE ${st}; later POST with that session id ${res.status}`;
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

let finished = false;

function finish(code) {
    if (finished) return;
    finished = true;
    report.ok = code === 0 && report.scenarios.length > 0 && report.scenarios.every(s => s.ok);
    const line = JSON.stringify(report) + '\n';
    process.stdout.write(line, () => process.exit(report.ok ? 0 : 1));
    // If stdout never drains, still exit.
    setTimeout(() => process.exit(report.ok ? 0 : 1), 2000).unref();
}

const watchdog = setTimeout(() => {
    report.scenarios.push({ name: 'watchdog', ok: false, detail: `whole run exceeded ${OVERALL_TIMEOUT_MS}ms`, durationMs: OVERALL_TIMEOUT_MS });
    finish(1);
}, OVERALL_TIMEOUT_MS);

async function main() {
    const connected = await scenario('connect', scenarioConnect);
    if (connected) {
        await scenario('get-stream', scenarioGetStream);
        await scenario('session-id-header', scenarioSessionHeader);
        await scenario('ping', scenarioPing);
        await scenario('tools-list', scenarioToolsList);
        await scenario('echo', scenarioEcho);
        await scenario('get-sum', scenarioGetSum);
        await scenario('progress', scenarioProgress);
        await scenario('sampling', scenarioSampling);
        await scenario('elicitation', scenarioElicitation);
        await scenario('roots', scenarioRoots);
        await scenario('resources-list', scenarioResourcesList);
        await scenario('resources-read', scenarioResourcesRead);
        await scenario('prompts-list', scenarioPromptsList);
        await scenario('prompts-get', scenarioPromptsGet);
        await scenario('logging-set-level', scenarioLogging);
        await scenario('resources-subscribe', scenarioSubscribe, STEP_TIMEOUT_MS + 10000);
        await scenario('concurrent', scenarioConcurrent);
        await scenario('errors', scenarioErrors);
        await scenario('session-id-stable', scenarioSessionHeader);
        await scenario('terminate', scenarioTerminate);
    }
    try {
        await withTimeout(client.close(), 3000, 'client.close');
    } catch (err) {
        report.errors.push(`close: ${errText(err)}`);
    }
    clearTimeout(watchdog);
    finish(0);
}

main().catch(err => {
    report.scenarios.push({ name: 'internal', ok: false, detail: `client.mjs crashed: ${errText(err)}`, durationMs: 0 });
    finish(1);
});
