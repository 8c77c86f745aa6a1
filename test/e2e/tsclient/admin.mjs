#!/usr/bin/env node
// A TypeScript SDK client of mcpgate's admin MCP server: lists its tools,
// calls sessions_list, reads mcpgate://config, subscribes to
// mcpgate://sessions and waits for notifications/resources/updated, which
// the Go test causes by opening a data-plane session once this script has
// printed "subscribed".
//
// Usage: node admin.mjs ADMIN_URL KEY
//
// Prints "subscribed" on a line of its own, then one JSON line:
// {"ok": bool, "steps": [{"name", "ok", "detail"}]}, and exits 0 when
// every step passed. The SDK is resolved like fixture.mjs does.

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeRoot = process.env.MCPGATE_NODE_ROOT || path.resolve(here, '..', '..', '..', 'tools', 'node');
const requireFromRoot = createRequire(path.join(nodeRoot, 'package.json'));
const sdk = {
    ...requireFromRoot('@modelcontextprotocol/sdk/client/index.js'),
    ...requireFromRoot('@modelcontextprotocol/sdk/client/streamableHttp.js'),
    ...requireFromRoot('@modelcontextprotocol/sdk/types.js')
};
const { Client, StreamableHTTPClientTransport, ResourceUpdatedNotificationSchema } = sdk;

const [url, key] = process.argv.slice(2);
const report = { ok: false, steps: [] };

async function step(name, fn) {
    try {
        const detail = await fn();
        report.steps.push({ name, ok: true, detail: String(detail ?? '') });
    } catch (err) {
        report.steps.push({ name, ok: false, detail: String(err && err.message || err) });
    }
}

function expect(cond, what) {
    if (!cond) throw new Error(what);
}

const watchdog = setTimeout(() => { finish(); }, 60000);
let updated;
const gotUpdate = new Promise(resolve => { updated = resolve; });

try {
    const client = new Client({ name: 'ts-admin-client', version: '1.0.0' }, { capabilities: {} });
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, n => {
        if (n.params.uri === 'mcpgate://sessions') updated(n.params.uri);
    });
    const transport = new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { Authorization: `Bearer ${key}` } }
    });
    await client.connect(transport);
    await step('tools/list', async () => {
        const r = await client.listTools();
        const names = r.tools.map(t => t.name);
        for (const want of ['sessions_list', 'session_end', 'config_apply', 'config_rollback', 'audit_query', 'quota_usage']) {
            expect(names.includes(want), `no ${want} in ${names}`);
        }
        const list = r.tools.find(t => t.name === 'sessions_list');
        expect(list.outputSchema && list.outputSchema.type === 'object', 'sessions_list has no outputSchema');
        return names.length;
    });
    await step('sessions_list', async () => {
        const r = await client.callTool({ name: 'sessions_list', arguments: {} });
        expect(!r.isError && r.structuredContent && Array.isArray(r.structuredContent.sessions), JSON.stringify(r));
        return r.structuredContent.total;
    });
    await step('config_apply without the role', async () => {
        const r = await client.callTool({ name: 'config_apply', arguments: { patch: { sessions: { max: 5 } } } });
        expect(r.isError && JSON.stringify(r.content).includes('needs the role admin'), JSON.stringify(r));
    });
    await step('resources/read', async () => {
        const r = await client.readResource({ uri: 'mcpgate://config' });
        expect(r.contents.length === 1 && r.contents[0].text.includes('routes'), JSON.stringify(r));
    });
    await step('resources/subscribe', async () => {
        await client.subscribeResource({ uri: 'mcpgate://sessions' });
        process.stdout.write('subscribed\n');
        const uri = await Promise.race([gotUpdate, new Promise((_, reject) => setTimeout(() => reject(new Error('no notifications/resources/updated within 10s')), 10000))]);
        return uri;
    });
    await client.close();
} catch (err) {
    report.steps.push({ name: 'connect', ok: false, detail: String(err && err.message || err) });
}
finish();

function finish() {
    clearTimeout(watchdog);
    report.ok = report.steps.length > 0 && report.steps.every(s => s.ok);
    process.stdout.write(JSON.stringify(report) + '\n');
    process.exit(report.ok ? 0 : 1);
}
