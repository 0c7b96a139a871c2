// The script SDK, evaluated (as a module) in every fresh context before the user's modules. It
// builds the `nango` object on the host functions in `globalThis.__lasso`, which it then
// removes, so user code only reaches the host through `nango`.
(function (host) {
    'use strict';

    function hostError(e) {
        const err = new Error(e.message);
        if (e.response) {
            // Nango's SDK throws axios errors for non-2xx answers; scripts read err.response.
            err.name = 'ProxyError';
            err.response = e.response;
            err.status = e.response.status;
        }
        return err;
    }

    async function call(op, args) {
        const json = await host.call(op, JSON.stringify(args === undefined ? null : args));
        const answer = JSON.parse(json);
        if (answer.error) {
            throw hostError(answer.error);
        }
        return answer.ok;
    }

    function show(v) {
        if (typeof v === 'string') {
            return v;
        }
        if (v instanceof Error) {
            return v.stack ? `${v.name}: ${v.message}\n${v.stack}` : `${v.name}: ${v.message}`;
        }
        try {
            const s = JSON.stringify(v);
            return s === undefined ? String(v) : s;
        } catch {
            return String(v);
        }
    }

    const logAt = (level) => (...args) => host.log(level, args.map(show).join(' '));
    globalThis.console = Object.freeze({
        log: logAt('info'),
        info: logAt('info'),
        debug: logAt('debug'),
        warn: logAt('warn'),
        error: logAt('error'),
    });

    let nextTimer = 1;
    const cleared = new Set();
    globalThis.setTimeout = (fn, ms, ...args) => {
        const id = nextTimer++;
        host.sleep(Number(ms) || 0).then(() => {
            if (!cleared.delete(id)) {
                fn(...args);
            }
        });
        return id;
    };
    globalThis.clearTimeout = (id) => {
        cleared.add(id);
    };

    // lodash `get`'s paths, as Nango's paginate reads them: `a.b`, `a[0].b`, `a["b"]`.
    function pathKeys(path) {
        return String(path)
            .replace(/\[\s*(?:"([^"]*)"|'([^']*)'|([^\]]*))\s*\]/g, (_, d, s, b) => `.${d ?? s ?? b}`)
            .split('.')
            .filter((k) => k !== '');
    }

    function lookup(value, path) {
        if (!path) {
            return value;
        }
        return pathKeys(path).reduce((v, key) => (v == null ? undefined : v[key]), value);
    }

    // lodash `set`: `a.b` makes `{a: {b}}` (Nango's paginate builds request bodies this way).
    function assignPath(target, path, value) {
        const keys = pathKeys(path);
        let at = target;
        keys.slice(0, -1).forEach((key, i) => {
            if (at[key] === null || typeof at[key] !== 'object') {
                at[key] = /^\d+$/.test(keys[i + 1]) ? [] : {};
            }
            at = at[key];
        });
        at[keys[keys.length - 1]] = value;
    }

    // `Link: <https://api.example.com/items?page=2>; rel="next", <...>; rel="last"`
    function linkFromHeader(header, rel) {
        if (!header) {
            return undefined;
        }
        for (const part of String(header).split(',')) {
            const match = part.match(/<([^>]+)>\s*;\s*rel="?([^";]+)"?/);
            if (match && match[2].split(/\s+/).includes(rel)) {
                return match[1];
            }
        }
        return undefined;
    }

    // Nango's checks of a pagination configuration, with its messages.
    function checkPagination(p) {
        if (!p.type) {
            throw new Error('Pagination type is required');
        }
        if (p.type === 'cursor') {
            if (!p.cursor_name_in_request) {
                throw new Error('Param cursor_name_in_request is required for cursor pagination');
            }
            if (!p.cursor_path_in_response) {
                throw new Error('Param cursor_path_in_response is required for cursor pagination');
            }
            if (p.limit && !p.limit_name_in_request) {
                throw new Error('Param limit_name_in_request is required for cursor pagination when limit is set');
            }
        } else if (p.type === 'link') {
            if (!p.link_rel_in_response_header && !p.link_path_in_response_body) {
                throw new Error('Either param link_rel_in_response_header or link_path_in_response_body is required for link pagination');
            }
        } else if (p.type === 'offset') {
            if (!p.offset_name_in_request) {
                throw new Error('Param offset_name_in_request is required for offset pagination');
            }
        } else {
            throw new Error(`Pagination type ${p.type} is not supported. Only cursor, link and offset pagination types are supported.`);
        }
    }

    // CommonJS modules (the `nango` CLI's bundles) run through this: their wrapper (see
    // commonjs.rs) imported every module they name up front; `require` hands those out only.
    Object.defineProperty(globalThis, '__lassoCommonJs', {
        value: function (name, table) {
            const module = { exports: {}, id: name, filename: name, loaded: false };
            const cache = new Map();
            const asCommonJs = ([namespace, node]) => {
                if (node) {
                    return namespace.default;
                }
                const exports = {};
                for (const key of Object.keys(namespace)) {
                    Object.defineProperty(exports, key, { get: () => namespace[key], enumerable: true });
                }
                Object.defineProperty(exports, '__esModule', { value: true });
                return exports;
            };
            const require = (specifier) => {
                if (typeof specifier !== 'string' || !Object.prototype.hasOwnProperty.call(table, specifier)) {
                    throw new Error(
                        `require(${JSON.stringify(String(specifier))}) in ${name}: only zod, nango and the Node modules Lasso provides can be required, by a literal name`
                    );
                }
                if (!cache.has(specifier)) {
                    cache.set(specifier, asCommonJs(table[specifier]));
                }
                return cache.get(specifier);
            };
            const entry = () => {
                module.loaded = true;
                const e = module.exports;
                return e && e.__esModule && 'default' in e ? e.default : e;
            };
            return { module, require, entry };
        },
    });

    // `nango.abortSignal`: an AbortSignal that aborts when the run is cancelled (a paused sync,
    // a cancelled task) or is about to reach its deadline. The host stops the script for good a
    // short grace period later; until then every SDK call throws, as Nango's do once aborted.
    function makeAbortSignal() {
        let reason;
        let watching = false;
        let onabort = null;
        const listeners = [];
        const signal = {};
        const fire = (state) => {
            if (reason !== undefined || !state) {
                return;
            }
            reason = new Error(
                state === 'deadline'
                    ? 'The function execution was aborted: it reached its deadline'
                    : 'The function execution was aborted: the run was cancelled',
            );
            reason.name = 'AbortError';
            reason.code = 'script_aborted';
            const event = { type: 'abort', target: signal };
            if (typeof onabort === 'function') {
                onabort.call(signal, event);
            }
            for (const { fn, once } of listeners.splice(0)) {
                fn.call(signal, event);
                if (!once) {
                    listeners.push({ fn, once });
                }
            }
        };
        const poll = () => fire(host.abortState());
        const watch = () => {
            if (!watching) {
                watching = true;
                host.untilAbort().then(fire);
            }
        };
        Object.defineProperties(signal, {
            aborted: { get: () => (poll(), reason !== undefined), enumerable: true },
            reason: { get: () => (poll(), reason), enumerable: true },
            onabort: {
                get: () => onabort,
                set: (fn) => {
                    onabort = fn;
                    watch();
                },
                enumerable: true,
            },
            throwIfAborted: {
                value: () => {
                    poll();
                    if (reason !== undefined) {
                        throw reason;
                    }
                },
            },
            addEventListener: {
                value: (type, fn, options) => {
                    if (type === 'abort' && typeof fn === 'function') {
                        listeners.push({ fn, once: Boolean(options && options.once) });
                        watch();
                    }
                },
            },
            removeEventListener: {
                value: (type, fn) => {
                    const i = listeners.findIndex((l) => l.fn === fn);
                    if (type === 'abort' && i >= 0) {
                        listeners.splice(i, 1);
                    }
                },
            },
            [Symbol.toStringTag]: { value: 'AbortSignal' },
        });
        return signal;
    }

    // What `uncontrolledFetch` answers: a fetch `Response` (status, headers, the body once).
    function makeResponse(answer) {
        const pairs = answer.headers;
        const headers = {
            get: (name) => {
                const found = pairs.filter(([k]) => k === String(name).toLowerCase()).map(([, v]) => v);
                return found.length ? found.join(', ') : null;
            },
            has: (name) => pairs.some(([k]) => k === String(name).toLowerCase()),
            forEach: (fn, thisArg) => pairs.forEach(([k, v]) => fn.call(thisArg, v, k, headers)),
            entries: () => pairs.map(([k, v]) => [k, v])[Symbol.iterator](),
            keys: () => pairs.map(([k]) => k)[Symbol.iterator](),
            values: () => pairs.map(([, v]) => v)[Symbol.iterator](),
            [Symbol.iterator]: () => pairs.map(([k, v]) => [k, v])[Symbol.iterator](),
        };
        let used = false;
        const body = () => {
            if (used) {
                return Promise.reject(new TypeError('Body has already been consumed.'));
            }
            used = true;
            return Promise.resolve(host.base64Decode(answer.body));
        };
        const response = {
            status: answer.status,
            statusText: answer.statusText,
            ok: answer.status >= 200 && answer.status < 300,
            url: answer.url,
            redirected: answer.redirected,
            type: 'basic',
            headers,
            get bodyUsed() {
                return used;
            },
            bytes: body,
            arrayBuffer: () => body().then((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)),
            text: () => body().then((b) => host.utf8Decode(b)),
            json: () => body().then((b) => JSON.parse(host.utf8Decode(b))),
            clone: () => {
                if (used) {
                    throw new TypeError('Response.clone: Body has already been consumed.');
                }
                return makeResponse(answer);
            },
        };
        return response;
    }

    globalThis.__lassoMakeNango = function (info, ActionError) {
        const abortSignal = makeAbortSignal();
        // Nango's SDK calls refuse to start once the run is aborted.
        const checked = (op, args) => {
            abortSignal.throwIfAborted();
            return call(op, args);
        };
        const proxy = (config) => checked('proxy', config);
        const verb = (method) => (config) => proxy({ ...config, method });

        async function* paginate(config) {
            const p = { ...(info.paginate || {}), ...(config.paginate || {}) };
            if (!info.paginate && !(config.paginate && config.paginate.type)) {
                throw new Error('There was no pagination configuration for this integration or configuration passed in.');
            }
            checkPagination(p);
            const method = String(config.method || 'GET').toUpperCase();
            // Nango: in the body for POST, PUT and PATCH unless the call's `paginate.in_body` says.
            const own = config.paginate || {};
            const inBody = own.in_body !== undefined ? Boolean(own.in_body) : ['POST', 'PUT', 'PATCH'].includes(method);
            const given = inBody ? config.data : config.params;
            const fields = given && typeof given === 'object' ? { ...given } : {};
            if (p.limit) {
                fields[p.limit_name_in_request] = p.limit;
            }
            const request = { ...config, method };
            delete request.paginate;
            const apply = () => {
                if (inBody) {
                    const data = {};
                    for (const key of Object.keys(fields)) {
                        assignPath(data, key, fields[key]);
                    }
                    request.data = data;
                } else {
                    request.params = { ...fields };
                }
            };
            const items = (response) => (p.response_path ? lookup(response.data, p.response_path) : response.data);
            const onPage = typeof p.on_page === 'function' ? p.on_page : null;
            switch (p.type) {
                case 'cursor': {
                    let next;
                    do {
                        if (next !== undefined) {
                            fields[p.cursor_name_in_request] = next;
                        }
                        apply();
                        const response = await proxy(request);
                        const page = items(response);
                        if (!page || !page.length) {
                            return;
                        }
                        yield page;
                        next = lookup(response.data, p.cursor_path_in_response);
                        if (typeof next === 'string') {
                            next = next.trim() || undefined;
                        } else if (typeof next !== 'number') {
                            next = undefined;
                        }
                        if (onPage) {
                            await onPage({ nextPageParam: next, response });
                        }
                    } while (next !== undefined);
                    return;
                }
                case 'link': {
                    apply();
                    let previous;
                    for (;;) {
                        const response = await proxy(request);
                        yield items(response);
                        let next;
                        if (p.link_rel_in_response_header) {
                            next = linkFromHeader(response.headers.link, p.link_rel_in_response_header);
                        }
                        if (!next && p.link_path_in_response_body) {
                            next = lookup(response.data, p.link_path_in_response_body);
                        }
                        if (onPage) {
                            await onPage({ nextPageParam: next, response });
                        }
                        if (!next || next === previous) {
                            return;
                        }
                        previous = next;
                        // The link carries its own query string (a whole URL stays under the
                        // provider's base URL, which the proxy checks).
                        request.endpoint = next;
                        delete request.params;
                    }
                }
                default: {
                    let offset = Number(p.offset_start_value || 0);
                    for (;;) {
                        fields[p.offset_name_in_request] = inBody ? offset : String(offset);
                        apply();
                        const response = await proxy(request);
                        const page = items(response);
                        if (!page || !page.length) {
                            return;
                        }
                        yield page;
                        if (p.limit && page.length < Number(p.limit)) {
                            return;
                        }
                        if (onPage) {
                            await onPage({ nextPageParam: offset, response });
                        }
                        offset += p.offset_calculation_method === 'per-page' ? 1 : page.length;
                    }
                }
            }
        }

        const batch = (op) => async (records, model) => {
            abortSignal.throwIfAborted();
            const answer = JSON.parse(await host.batch(op, String(model), records));
            if (answer.error) {
                throw hostError(answer.error);
            }
            return true;
        };

        // Nango's: parses `input` with the schema; bad input is an ActionError carrying zod's
        // issues (each also logged), good input comes back as zod's success result.
        async function zodValidateInput({ zodSchema, input }) {
            if (!zodSchema || typeof zodSchema.safeParse !== 'function') {
                throw new TypeError('nango.zodValidateInput: `zodSchema` must be a zod schema');
            }
            const parsed = zodSchema.safeParse(input);
            if (parsed.success) {
                return parsed;
            }
            const issues = parsed.error.issues.map((i) => ({ path: i.path.map(String), code: i.code, message: i.message }));
            for (const issue of issues) {
                host.log('error', `Invalid input provided: ${issue.message} at path ${issue.path.join('.') || '(root)'}`);
            }
            const summary = issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
            throw new ActionError({ message: `Invalid input provided: ${summary}`, issues });
        }

        const modelName = (model, member) => {
            if (typeof model !== 'string' || model === '') {
                throw new TypeError(`nango.${member}: the model name must be a non-empty string`);
            }
            return model;
        };

        // Nango reads records in pages of 100 ids.
        async function getRecordsByIds(ids, model) {
            if (!Array.isArray(ids)) {
                throw new TypeError('nango.getRecordsByIds: `ids` must be an array');
            }
            modelName(model, 'getRecordsByIds');
            const found = new Map();
            for (let i = 0; i < ids.length; i += 100) {
                const chunk = new Map(ids.slice(i, i + 100).map((id) => [String(id), id]));
                const records = await checked('getRecordsByIds', { model, ids: [...chunk.keys()] });
                for (const record of records) {
                    const id = chunk.get(String(record.id));
                    if (id !== undefined) {
                        found.set(id, record);
                    }
                }
            }
            return found;
        }

        async function* listRecords(model, options) {
            modelName(model, 'listRecords');
            let cursor = options && options.cursor ? String(options.cursor) : null;
            do {
                const page = await checked('listRecords', { model, cursor });
                for (const record of page.records) {
                    yield record;
                }
                cursor = page.next_cursor;
            } while (cursor);
        }

        async function uncontrolledFetch(options) {
            if (!options || options.url === undefined || options.url === null) {
                throw new TypeError('nango.uncontrolledFetch: `url` is required');
            }
            const url = typeof options.url === 'object' && 'href' in options.url ? options.url.href : String(options.url);
            const headers = {};
            const given = options.headers;
            if (given && typeof given.forEach === 'function' && !Array.isArray(given)) {
                given.forEach((v, k) => {
                    headers[k] = String(v);
                });
            } else if (Array.isArray(given)) {
                for (const [k, v] of given) {
                    headers[k] = String(v);
                }
            } else if (given && typeof given === 'object') {
                for (const k of Object.keys(given)) {
                    headers[k] = String(given[k]);
                }
            }
            let body = null;
            const raw = options.body;
            if (typeof raw === 'string') {
                body = host.base64Encode(host.utf8Encode(raw), false);
            } else if (raw instanceof ArrayBuffer) {
                body = host.base64Encode(new Uint8Array(raw), false);
            } else if (ArrayBuffer.isView(raw)) {
                body = host.base64Encode(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), false);
            } else if (raw !== undefined && raw !== null) {
                throw new TypeError('nango.uncontrolledFetch: `body` must be a string or bytes');
            }
            const answer = await checked('uncontrolledFetch', {
                url,
                method: String(options.method || 'GET').toUpperCase(),
                headers,
                body,
            });
            if (answer.refused) {
                // Nango's refusal: an ActionError the action's caller sees.
                throw new ActionError({ code: 'url_not_allowed', message: answer.refused });
            }
            return makeResponse(answer);
        }

        // Nango's `(providerConfigKey, connectionId, actionName, input)`, and its docs'
        // `(actionName, input)` for this connection.
        function triggerAction(...args) {
            const full = args.length >= 3 && typeof args[2] === 'string';
            const [providerConfigKey, connectionId, action, input] = full
                ? args
                : [info.providerConfigKey, info.connectionId, args[0], args[1]];
            return checked('triggerAction', {
                providerConfigKey,
                connectionId,
                action,
                input: input === undefined ? null : input,
            });
        }

        function triggerSync(providerConfigKey, connectionId, sync, optsOrMode) {
            const args = { providerConfigKey, connectionId, sync };
            if (optsOrMode && typeof optsOrMode === 'object') {
                args.opts = optsOrMode;
            } else if (typeof optsOrMode === 'string') {
                args.sync_mode = optsOrMode;
            } else if (optsOrMode === true) {
                args.full_resync = true;
            }
            return checked('triggerSync', args).then(() => undefined);
        }

        const unsupported = (member, why) => () => {
            throw new Error(`nango.${member} is not supported by Lasso${why ? `: ${why}` : ' yet'}`);
        };

        return Object.freeze({
            connectionId: info.connectionId,
            providerConfigKey: info.providerConfigKey,
            provider: info.provider,
            variant: info.variant,
            lastSyncDate: info.lastSyncDate ? new Date(info.lastSyncDate) : null,
            executionId: info.executionId,
            ActionError,
            abortSignal,
            proxy,
            get: verb('GET'),
            post: verb('POST'),
            put: verb('PUT'),
            patch: verb('PATCH'),
            delete: verb('DELETE'),
            paginate,
            batchSave: batch('save'),
            // Nango's deprecated name of batchSave.
            batchSend: batch('save'),
            batchUpdate: batch('update'),
            batchDelete: batch('delete'),
            getRecordsByIds,
            listRecords,
            setMergingStrategy: (merging, model) =>
                checked('setMergingStrategy', {
                    strategy: merging && merging.strategy,
                    model: modelName(model, 'setMergingStrategy'),
                }).then(() => undefined),
            getConnection: () => checked('getConnection'),
            getToken: () => checked('getToken'),
            getIntegration: (queries) =>
                checked('getIntegration', { include: (queries && queries.include) || [] }),
            getWebhookURL: () => checked('getIntegration', { include: ['webhook'] }).then((i) => i.webhook_url),
            getMetadata: () => checked('getMetadata'),
            setMetadata: (metadata) => checked('setMetadata', metadata).then(() => undefined),
            updateMetadata: (metadata) => checked('updateMetadata', metadata).then(() => undefined),
            getCheckpoint: () => checked('getCheckpoint'),
            saveCheckpoint: (checkpoint) => checked('saveCheckpoint', checkpoint).then(() => undefined),
            clearCheckpoint: () => checked('clearCheckpoint').then(() => undefined),
            trackDeletesStart: (model) =>
                checked('trackDeletesStart', { model: modelName(model, 'trackDeletesStart') }).then(() => undefined),
            trackDeletesEnd: (model) => checked('trackDeletesEnd', { model: modelName(model, 'trackDeletesEnd') }),
            zodValidateInput,
            getEnvironmentVariables: () => checked('getEnvironmentVariables'),
            uncontrolledFetch,
            tryAcquireLock: (lock) => checked('tryAcquireLock', { key: lock && lock.key, ttlMs: lock && lock.ttlMs }),
            releaseLock: (lock) => call('releaseLock', { key: lock && lock.key }),
            releaseAllLocks: () => call('releaseAllLocks').then(() => undefined),
            triggerAction,
            triggerSync,
            startSync: (providerConfigKey, syncs, connectionId) =>
                checked('startSync', { providerConfigKey, syncs, connectionId: connectionId ?? null }).then(() => undefined),
            getFieldMapping: unsupported('getFieldMapping', 'deprecated by Nango; use getMetadata'),
            setFieldMapping: unsupported('setFieldMapping', 'deprecated by Nango; use setMetadata'),
            getObjectsConfig: unsupported('getObjectsConfig'),
            getFlowAttributes: unsupported('getFlowAttributes'),
            log: (...args) => {
                const last = args[args.length - 1];
                const level =
                    args.length > 1 && last && typeof last === 'object' && typeof last.level === 'string'
                        ? (args.pop(), last.level)
                        : 'info';
                host.log(level, args.map(show).join(' '));
            },
        });
    };
})(globalThis.__lasso);
delete globalThis.__lasso;
export {};
