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

    function lookup(value, path) {
        if (!path) {
            return value;
        }
        return path.split('.').reduce((v, key) => (v == null ? undefined : v[key]), value);
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

    globalThis.__lassoMakeNango = function (info, ActionError) {
        const proxy = (config) => call('proxy', config);
        const verb = (method) => (config) => proxy({ ...config, method });

        async function* paginate(config) {
            const p = { ...(info.paginate || {}), ...(config.paginate || {}) };
            if (!p.type) {
                throw new Error(
                    `nango.paginate: provider ${info.provider} has no pagination settings; pass paginate: {type: 'cursor' | 'link' | 'offset', ...}`,
                );
            }
            const method = (config.method || 'GET').toUpperCase();
            const inBody = method !== 'GET' && p.in_body === true;
            let params = config.params && typeof config.params === 'object' ? { ...config.params } : {};
            let data = config.data && typeof config.data === 'object' ? { ...config.data } : config.data;
            const set = (name, value) => {
                if (inBody) {
                    data = { ...(data || {}), [name]: value };
                } else {
                    params[name] = value;
                }
            };
            const limit = p.limit === undefined ? undefined : Number(p.limit);
            if (limit !== undefined && p.limit_name_in_request) {
                set(p.limit_name_in_request, limit);
            }
            const page = (body) => {
                const items = p.response_path ? lookup(body, p.response_path) : body;
                return Array.isArray(items) ? items : [];
            };
            let endpoint = config.endpoint;
            let cursor;
            let offset = Number(p.offset_start_value ?? 0);
            for (;;) {
                if (p.type === 'cursor' && cursor !== undefined) {
                    set(p.cursor_name_in_request, cursor);
                }
                if (p.type === 'offset') {
                    set(p.offset_name_in_request, offset);
                }
                const response = await proxy({ ...config, endpoint, method, params, data });
                const items = page(response.data);
                if (items.length > 0) {
                    yield items;
                }
                switch (p.type) {
                    case 'cursor': {
                        cursor = lookup(response.data, p.cursor_path_in_response);
                        if (items.length === 0 || cursor === undefined || cursor === null || cursor === '') {
                            return;
                        }
                        break;
                    }
                    case 'link': {
                        const next = p.link_path_in_response_body
                            ? lookup(response.data, p.link_path_in_response_body)
                            : linkFromHeader(response.headers.link, p.link_rel_in_response_header || 'next');
                        if (!next) {
                            return;
                        }
                        // The next link carries its own query string.
                        endpoint = next;
                        params = {};
                        break;
                    }
                    case 'offset': {
                        if (items.length === 0 || (limit !== undefined && items.length < limit)) {
                            return;
                        }
                        offset += p.offset_calculation_method === 'per-page' ? 1 : items.length;
                        break;
                    }
                    default:
                        throw new Error(`nango.paginate: unknown pagination type '${p.type}'`);
                }
            }
        }

        const batch = (op) => async (records, model) => {
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

        const unsupported = (member) => () => {
            throw new Error(`nango.${member} is not supported by Lasso yet`);
        };
        const members = {};
        for (const member of [
            'getRecordsByIds', 'listRecords', 'getToken', 'getIntegration', 'getWebhookURL',
            'setMergingStrategy', 'uncontrolledFetch', 'tryAcquireLock', 'releaseLock',
            'triggerAction', 'triggerSync', 'startSync', 'getFieldMapping', 'setFieldMapping',
            'getObjectsConfig', 'getFlowAttributes', 'batchSend',
        ]) {
            members[member] = unsupported(member);
        }
        Object.defineProperty(members, 'abortSignal', {
            get: unsupported('abortSignal'),
            enumerable: true,
        });
        const modelName = (model, member) => {
            if (typeof model !== 'string' || model === '') {
                throw new TypeError(`nango.${member}: the model name must be a non-empty string`);
            }
            return model;
        };

        return Object.freeze(Object.assign(members, {
            connectionId: info.connectionId,
            providerConfigKey: info.providerConfigKey,
            provider: info.provider,
            variant: info.variant,
            lastSyncDate: info.lastSyncDate ? new Date(info.lastSyncDate) : null,
            executionId: info.executionId,
            ActionError,
            proxy,
            get: verb('GET'),
            post: verb('POST'),
            put: verb('PUT'),
            patch: verb('PATCH'),
            delete: verb('DELETE'),
            paginate,
            batchSave: batch('save'),
            batchUpdate: batch('update'),
            batchDelete: batch('delete'),
            getConnection: () => call('getConnection'),
            getMetadata: () => call('getMetadata'),
            setMetadata: (metadata) => call('setMetadata', metadata).then(() => undefined),
            updateMetadata: (metadata) => call('updateMetadata', metadata).then(() => undefined),
            getCheckpoint: () => call('getCheckpoint'),
            saveCheckpoint: (checkpoint) => call('saveCheckpoint', checkpoint).then(() => undefined),
            clearCheckpoint: () => call('clearCheckpoint').then(() => undefined),
            trackDeletesStart: (model) => call('trackDeletesStart', { model: modelName(model, 'trackDeletesStart') }).then(() => undefined),
            trackDeletesEnd: (model) => call('trackDeletesEnd', { model: modelName(model, 'trackDeletesEnd') }).then(() => undefined),
            zodValidateInput,
            getEnvironmentVariables: () => call('getEnvironmentVariables'),
            log: (...args) => {
                const last = args[args.length - 1];
                const level =
                    args.length > 1 && last && typeof last === 'object' && typeof last.level === 'string'
                        ? (args.pop(), last.level)
                        : 'info';
                host.log(level, args.map(show).join(' '));
            },
        }));
    };
})(globalThis.__lasso);
delete globalThis.__lasso;
export {};
