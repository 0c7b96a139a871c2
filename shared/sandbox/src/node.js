// Node compatibility globals and the objects behind the `crypto`, `url`, `buffer` and
// `querystring` modules (see node.rs). Evaluated in every context while `globalThis.__lasso`
// still holds the host functions; the classes are built on first use, so a script that uses
// none of them pays only for the getters.
(function (host) {
    'use strict';
    const h = {
        urlParse: host.urlParse,
        urlSet: host.urlSet,
        utf8Encode: host.utf8Encode,
        utf8Decode: host.utf8Decode,
        base64Encode: host.base64Encode,
        base64Decode: host.base64Decode,
        hash: host.hash,
        hmac: host.hmac,
        randomBytes: host.randomBytes,
        randomUUID: host.randomUUID,
    };

    // How a URL refreshes its searchParams after its search changed.
    const REPLACE = Symbol('replace');

    const lazy = (target, name, make) => {
        let value;
        let made = false;
        Object.defineProperty(target, name, {
            configurable: true,
            enumerable: false,
            get() {
                if (!made) {
                    value = make();
                    made = true;
                }
                return value;
            },
            set(v) {
                value = v;
                made = true;
            },
        });
    };

    // ------------------------------------------------------------------ URLSearchParams
    const FORM_SAFE = /[!'()~]/g;
    const formEncode = (s) =>
        encodeURIComponent(String(s))
            .replace(FORM_SAFE, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
            .replace(/%20/g, '+');
    const formDecode = (s) => {
        const plus = s.replace(/\+/g, ' ');
        try {
            return decodeURIComponent(plus);
        } catch {
            return plus.replace(/%([0-9a-fA-F]{2})/g, (_, x) => String.fromCharCode(parseInt(x, 16)));
        }
    };

    function makeURLSearchParams() {
        const UPDATE = Symbol('update');
        class URLSearchParams {
            #list = [];
            constructor(init) {
                if (init === undefined || init === null) {
                    return;
                }
                if (typeof init === 'string') {
                    this.#parse(init);
                } else if (init instanceof URLSearchParams) {
                    this.#list = [...init];
                } else if (typeof init === 'object' && typeof init[Symbol.iterator] === 'function') {
                    for (const pair of init) {
                        const [k, v] = [...pair];
                        this.#list.push([String(k), String(v)]);
                    }
                } else if (typeof init === 'object') {
                    for (const k of Object.keys(init)) {
                        this.#list.push([k, String(init[k])]);
                    }
                } else {
                    this.#parse(String(init));
                }
            }
            #parse(s) {
                this.#list = [];
                for (const part of (s.startsWith('?') ? s.slice(1) : s).split('&')) {
                    if (part === '') {
                        continue;
                    }
                    const i = part.indexOf('=');
                    this.#list.push(i < 0 ? [formDecode(part), ''] : [formDecode(part.slice(0, i)), formDecode(part.slice(i + 1))]);
                }
            }
            #changed() {
                if (this[UPDATE]) {
                    this[UPDATE](this.toString());
                }
            }
            get size() {
                return this.#list.length;
            }
            append(k, v) {
                this.#list.push([String(k), String(v)]);
                this.#changed();
            }
            delete(k, v) {
                k = String(k);
                this.#list = this.#list.filter(([a, b]) => a !== k || (v !== undefined && b !== String(v)));
                this.#changed();
            }
            get(k) {
                const found = this.#list.find(([a]) => a === String(k));
                return found ? found[1] : null;
            }
            getAll(k) {
                return this.#list.filter(([a]) => a === String(k)).map(([, b]) => b);
            }
            has(k, v) {
                return this.#list.some(([a, b]) => a === String(k) && (v === undefined || b === String(v)));
            }
            set(k, v) {
                k = String(k);
                const i = this.#list.findIndex(([a]) => a === k);
                if (i < 0) {
                    this.#list.push([k, String(v)]);
                } else {
                    this.#list[i] = [k, String(v)];
                    this.#list = this.#list.filter(([a], j) => a !== k || j <= i);
                }
                this.#changed();
            }
            sort() {
                this.#list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
                this.#changed();
            }
            forEach(fn, thisArg) {
                for (const [k, v] of this.#list) {
                    fn.call(thisArg, v, k, this);
                }
            }
            keys() {
                return this.#list.map(([k]) => k)[Symbol.iterator]();
            }
            values() {
                return this.#list.map(([, v]) => v)[Symbol.iterator]();
            }
            entries() {
                return this.#list.map(([k, v]) => [k, v])[Symbol.iterator]();
            }
            [Symbol.iterator]() {
                return this.entries();
            }
            toString() {
                return this.#list.map(([k, v]) => `${formEncode(k)}=${formEncode(v)}`).join('&');
            }
            static [REPLACE](params, search) {
                params.#parse(search);
            }
        }
        URLSearchParams.UPDATE = UPDATE;
        return URLSearchParams;
    }

    // ------------------------------------------------------------------ URL
    function makeURL() {
        const Params = globalThis.URLSearchParams;
        const parse = (input, base) => h.urlParse(String(input), base === undefined ? undefined : String(base));
        class URL {
            #p;
            #params;
            constructor(input, base) {
                const parts = parse(input, base);
                if (!parts) {
                    const err = new TypeError(`Invalid URL: ${String(input)}`);
                    err.code = 'ERR_INVALID_URL';
                    err.input = String(input);
                    throw err;
                }
                this.#p = parts;
            }
            static canParse(input, base) {
                return !!parse(input, base);
            }
            static parse(input, base) {
                const parts = parse(input, base);
                return parts ? new URL(parts[0]) : null;
            }
            #set(part, value) {
                const parts = h.urlSet(this.#p[0], part, String(value));
                if (parts) {
                    this.#p = parts;
                    if (this.#params && part !== 'hash') {
                        Params[REPLACE](this.#params, parts[8]);
                    }
                }
            }
            get href() { return this.#p[0]; }
            set href(v) {
                if (!parse(v)) {
                    throw new TypeError(`Invalid URL: ${String(v)}`);
                }
                this.#set('href', v);
            }
            get protocol() { return this.#p[1]; }
            set protocol(v) { this.#set('protocol', v); }
            get username() { return this.#p[2]; }
            set username(v) { this.#set('username', v); }
            get password() { return this.#p[3]; }
            set password(v) { this.#set('password', v); }
            get host() { return this.#p[4]; }
            set host(v) { this.#set('host', v); }
            get hostname() { return this.#p[5]; }
            set hostname(v) { this.#set('hostname', v); }
            get port() { return this.#p[6]; }
            set port(v) { this.#set('port', v); }
            get pathname() { return this.#p[7]; }
            set pathname(v) { this.#set('pathname', v); }
            get search() { return this.#p[8]; }
            set search(v) { this.#set('search', v); }
            get hash() { return this.#p[9]; }
            set hash(v) { this.#set('hash', v); }
            get origin() { return this.#p[10]; }
            get searchParams() {
                if (!this.#params) {
                    this.#params = new Params(this.#p[8]);
                    this.#params[Params.UPDATE] = (s) => {
                        const parts = h.urlSet(this.#p[0], 'search', s);
                        if (parts) {
                            this.#p = parts;
                        }
                    };
                }
                return this.#params;
            }
            toString() { return this.#p[0]; }
            toJSON() { return this.#p[0]; }
        }
        return URL;
    }

    // ------------------------------------------------------------------ text and base64
    const toBytes = (data, encoding) => {
        if (typeof data === 'string') {
            return bufferFrom(data, encoding);
        }
        if (data instanceof Uint8Array) {
            return data;
        }
        if (ArrayBuffer.isView(data)) {
            return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
        }
        if (data instanceof ArrayBuffer) {
            return new Uint8Array(data);
        }
        throw new TypeError('The data argument must be a string, Buffer, TypedArray or DataView');
    };
    const plain = (bytes) => (bytes.constructor === Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));

    function latin1Bytes(s) {
        const out = new Uint8Array(s.length);
        for (let i = 0; i < s.length; i++) {
            out[i] = s.charCodeAt(i) & 0xff;
        }
        return out;
    }
    function latin1String(bytes) {
        let s = '';
        for (let i = 0; i < bytes.length; i += 8192) {
            s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
        }
        return s;
    }
    function hexBytes(s) {
        const n = s.length >> 1;
        const out = new Uint8Array(n);
        let i = 0;
        for (; i < n; i++) {
            const v = parseInt(s.substr(i * 2, 2), 16);
            if (Number.isNaN(v)) {
                break;
            }
            out[i] = v;
        }
        return out.subarray(0, i);
    }
    function hexString(bytes) {
        let s = '';
        for (let i = 0; i < bytes.length; i++) {
            s += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
        }
        return s;
    }
    const ENCODINGS = ['utf8', 'utf-8', 'hex', 'base64', 'base64url', 'latin1', 'binary', 'ascii', 'ucs2', 'utf16le'];
    const normal = (encoding) => {
        const e = (encoding || 'utf8').toLowerCase();
        if (!ENCODINGS.includes(e)) {
            const err = new TypeError(`Unknown encoding: ${encoding}`);
            err.code = 'ERR_UNKNOWN_ENCODING';
            throw err;
        }
        return e === 'utf-8' ? 'utf8' : e === 'binary' ? 'latin1' : e === 'ucs2' ? 'utf16le' : e;
    };
    function encodeString(s, encoding) {
        switch (normal(encoding)) {
            case 'utf8':
                return h.utf8Encode(s);
            case 'hex':
                return hexBytes(s);
            case 'base64':
            case 'base64url':
                return h.base64Decode(s);
            case 'latin1':
            case 'ascii':
                return latin1Bytes(s);
            case 'utf16le': {
                const out = new Uint8Array(s.length * 2);
                for (let i = 0; i < s.length; i++) {
                    const c = s.charCodeAt(i);
                    out[i * 2] = c & 0xff;
                    out[i * 2 + 1] = c >> 8;
                }
                return out;
            }
        }
    }
    function decodeBytes(bytes, encoding) {
        switch (normal(encoding)) {
            case 'utf8':
                return h.utf8Decode(plain(bytes));
            case 'hex':
                return hexString(bytes);
            case 'base64':
                return h.base64Encode(plain(bytes), false);
            case 'base64url':
                return h.base64Encode(plain(bytes), true);
            case 'latin1':
                return latin1String(bytes);
            case 'ascii':
                return latin1String(bytes.map((b) => b & 0x7f));
            case 'utf16le': {
                let s = '';
                for (let i = 0; i + 1 < bytes.length; i += 2) {
                    s += String.fromCharCode(bytes[i] | (bytes[i + 1] << 8));
                }
                return s;
            }
        }
    }

    // ------------------------------------------------------------------ Buffer
    let BufferClass;
    function bufferFrom(value, encodingOrOffset, length) {
        const B = BufferClass || globalThis.Buffer;
        if (typeof value === 'string') {
            const bytes = encodeString(value, encodingOrOffset);
            return new B(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        }
        if (value instanceof ArrayBuffer) {
            const offset = encodingOrOffset === undefined ? 0 : Number(encodingOrOffset);
            return new B(value, offset, length === undefined ? value.byteLength - offset : Number(length));
        }
        if (ArrayBuffer.isView(value)) {
            const copy = new B(value.byteLength);
            copy.set(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
            return copy;
        }
        if (Array.isArray(value)) {
            const out = new B(value.length);
            value.forEach((v, i) => {
                out[i] = Number(v) & 0xff;
            });
            return out;
        }
        if (value && typeof value === 'object' && value.type === 'Buffer' && Array.isArray(value.data)) {
            return bufferFrom(value.data);
        }
        if (value && typeof value === 'object' && typeof value.length === 'number') {
            return bufferFrom(Array.from(value));
        }
        throw new TypeError('The first argument must be a string, Buffer, ArrayBuffer, Array, or array-like object');
    }
    function makeBuffer() {
        class Buffer extends Uint8Array {
            static from(value, encodingOrOffset, length) {
                return bufferFrom(value, encodingOrOffset, length);
            }
            static alloc(size, fill, encoding) {
                const b = new Buffer(size);
                if (fill !== undefined) {
                    b.fill(fill, 0, size, encoding);
                }
                return b;
            }
            static allocUnsafe(size) {
                return new Buffer(size);
            }
            static isBuffer(b) {
                return b instanceof Buffer;
            }
            static isEncoding(e) {
                return typeof e === 'string' && ENCODINGS.includes(e.toLowerCase());
            }
            static byteLength(value, encoding) {
                return typeof value === 'string' ? encodeString(value, encoding).byteLength : value.byteLength;
            }
            static concat(list, total) {
                const length = total === undefined ? list.reduce((n, b) => n + b.length, 0) : total;
                const out = new Buffer(length);
                let at = 0;
                for (const b of list) {
                    if (at >= length) {
                        break;
                    }
                    const part = b.length > length - at ? b.subarray(0, length - at) : b;
                    out.set(part, at);
                    at += part.length;
                }
                return out;
            }
            static compare(a, b) {
                return a.compare(b);
            }
            toString(encoding, start, end) {
                const view = start === undefined && end === undefined ? this : this.subarray(start || 0, end === undefined ? this.length : end);
                return decodeBytes(view, encoding);
            }
            toJSON() {
                return { type: 'Buffer', data: Array.from(this) };
            }
            equals(other) {
                return this.compare(other) === 0;
            }
            compare(other) {
                const n = Math.min(this.length, other.length);
                for (let i = 0; i < n; i++) {
                    if (this[i] !== other[i]) {
                        return this[i] < other[i] ? -1 : 1;
                    }
                }
                return this.length === other.length ? 0 : this.length < other.length ? -1 : 1;
            }
            fill(value, start = 0, end = this.length, encoding) {
                if (typeof value === 'string') {
                    const bytes = encodeString(value, encoding);
                    for (let i = start; i < end; i++) {
                        this[i] = bytes.length ? bytes[(i - start) % bytes.length] : 0;
                    }
                    return this;
                }
                return super.fill(value, start, end);
            }
            write(string, offset = 0, length, encoding) {
                if (typeof offset === 'string') {
                    encoding = offset;
                    offset = 0;
                }
                const bytes = encodeString(string, encoding);
                const n = Math.min(bytes.length, length === undefined ? this.length - offset : length, this.length - offset);
                this.set(bytes.subarray(0, n), offset);
                return n;
            }
            slice(start, end) {
                return this.subarray(start, end);
            }
            subarray(start, end) {
                const view = Uint8Array.prototype.subarray.call(this, start, end);
                return new Buffer(view.buffer, view.byteOffset, view.byteLength);
            }
            copy(target, targetStart = 0, sourceStart = 0, sourceEnd = this.length) {
                const part = Uint8Array.prototype.subarray.call(this, sourceStart, sourceEnd);
                const n = Math.min(part.length, target.length - targetStart);
                target.set(part.subarray(0, n), targetStart);
                return n;
            }
            includes(value, byteOffset, encoding) {
                return this.indexOf(value, byteOffset, encoding) !== -1;
            }
            indexOf(value, byteOffset = 0, encoding) {
                if (typeof value === 'number') {
                    return super.indexOf(value, byteOffset);
                }
                const needle = typeof value === 'string' ? encodeString(value, encoding) : value;
                outer: for (let i = byteOffset; i <= this.length - needle.length; i++) {
                    for (let j = 0; j < needle.length; j++) {
                        if (this[i + j] !== needle[j]) {
                            continue outer;
                        }
                    }
                    return i;
                }
                return -1;
            }
            readUInt8(o = 0) { return this[o]; }
            readUInt16BE(o = 0) { return (this[o] << 8) | this[o + 1]; }
            readUInt16LE(o = 0) { return this[o] | (this[o + 1] << 8); }
            readUInt32BE(o = 0) { return new DataView(this.buffer, this.byteOffset).getUint32(o, false); }
            readUInt32LE(o = 0) { return new DataView(this.buffer, this.byteOffset).getUint32(o, true); }
            readInt32BE(o = 0) { return new DataView(this.buffer, this.byteOffset).getInt32(o, false); }
            readInt32LE(o = 0) { return new DataView(this.buffer, this.byteOffset).getInt32(o, true); }
            writeUInt8(v, o = 0) { this[o] = v; return o + 1; }
            writeUInt16BE(v, o = 0) { new DataView(this.buffer, this.byteOffset).setUint16(o, v, false); return o + 2; }
            writeUInt16LE(v, o = 0) { new DataView(this.buffer, this.byteOffset).setUint16(o, v, true); return o + 2; }
            writeUInt32BE(v, o = 0) { new DataView(this.buffer, this.byteOffset).setUint32(o, v, false); return o + 4; }
            writeUInt32LE(v, o = 0) { new DataView(this.buffer, this.byteOffset).setUint32(o, v, true); return o + 4; }
            writeInt32BE(v, o = 0) { new DataView(this.buffer, this.byteOffset).setInt32(o, v, false); return o + 4; }
            writeInt32LE(v, o = 0) { new DataView(this.buffer, this.byteOffset).setInt32(o, v, true); return o + 4; }
        }
        BufferClass = Buffer;
        return Buffer;
    }

    function makeTextEncoder() {
        return class TextEncoder {
            get encoding() {
                return 'utf-8';
            }
            encode(s = '') {
                return h.utf8Encode(String(s));
            }
            encodeInto(s, dest) {
                const bytes = h.utf8Encode(String(s));
                const n = Math.min(bytes.length, dest.length);
                dest.set(bytes.subarray(0, n));
                return { read: String(s).length, written: n };
            }
        };
    }
    function makeTextDecoder() {
        return class TextDecoder {
            #encoding;
            constructor(encoding = 'utf-8') {
                const e = String(encoding).toLowerCase();
                if (e !== 'utf-8' && e !== 'utf8' && e !== 'unicode-1-1-utf-8') {
                    throw new RangeError(`TextDecoder: the encoding '${encoding}' is not supported (only utf-8)`);
                }
                this.#encoding = 'utf-8';
            }
            get encoding() {
                return this.#encoding;
            }
            decode(input) {
                if (input === undefined) {
                    return '';
                }
                return h.utf8Decode(plain(toBytes(input)));
            }
        };
    }

    function atob(s) {
        const text = String(s).replace(/[\t\n\f\r ]/g, '');
        if (/[^A-Za-z0-9+/=]/.test(text) || text.length % 4 === 1) {
            const err = new Error('The string to be decoded is not correctly encoded.');
            err.name = 'InvalidCharacterError';
            throw err;
        }
        return latin1String(h.base64Decode(text));
    }
    function btoa(s) {
        const text = String(s);
        for (let i = 0; i < text.length; i++) {
            if (text.charCodeAt(i) > 255) {
                const err = new Error('Invalid character');
                err.name = 'InvalidCharacterError';
                throw err;
            }
        }
        return h.base64Encode(latin1Bytes(text), false);
    }

    // ------------------------------------------------------------------ structuredClone
    function structuredClone(value) {
        const seen = new Map();
        const clone = (v) => {
            if (v === null || typeof v !== 'object') {
                if (typeof v === 'function' || typeof v === 'symbol') {
                    const err = new Error(`${typeof v === 'function' ? 'function' : 'symbol'} could not be cloned.`);
                    err.name = 'DataCloneError';
                    throw err;
                }
                return v;
            }
            if (seen.has(v)) {
                return seen.get(v);
            }
            let out;
            if (v instanceof Date) {
                out = new Date(v.getTime());
            } else if (v instanceof RegExp) {
                out = new RegExp(v.source, v.flags);
            } else if (v instanceof Map) {
                out = new Map();
                seen.set(v, out);
                v.forEach((val, key) => out.set(clone(key), clone(val)));
                return out;
            } else if (v instanceof Set) {
                out = new Set();
                seen.set(v, out);
                v.forEach((val) => out.add(clone(val)));
                return out;
            } else if (v instanceof ArrayBuffer) {
                out = v.slice(0);
            } else if (ArrayBuffer.isView(v)) {
                const Ctor = v instanceof Uint8Array ? Uint8Array : v.constructor;
                out = new Ctor(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
            } else if (v instanceof Error) {
                out = new Error(v.message);
                out.name = v.name;
                out.stack = v.stack;
            } else if (Array.isArray(v)) {
                out = [];
                seen.set(v, out);
                v.forEach((item, i) => {
                    out[i] = clone(item);
                });
                return out;
            } else {
                out = {};
                seen.set(v, out);
                for (const k of Object.keys(v)) {
                    out[k] = clone(v[k]);
                }
                return out;
            }
            seen.set(v, out);
            return out;
        };
        return clone(value);
    }

    // ------------------------------------------------------------------ crypto
    function makeCrypto() {
        const Buffer = globalThis.Buffer;
        const out = (bytes, encoding) => {
            const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
            return encoding === undefined ? b : b.toString(encoding);
        };
        class Hash {
            #algorithm;
            #key;
            #chunks = [];
            #done = false;
            constructor(algorithm, key) {
                this.#algorithm = String(algorithm).toLowerCase();
                this.#key = key;
                const probe = key === undefined ? h.hash(this.#algorithm, new Uint8Array(0)) : h.hmac(this.#algorithm, plain(key), new Uint8Array(0));
                if (probe === undefined || probe === null) {
                    const err = new Error(`Digest method not supported: ${algorithm} (Lasso provides sha1, sha224, sha256, sha384, sha512${key === undefined ? ', md5' : ''})`);
                    err.code = 'ERR_CRYPTO_INVALID_DIGEST';
                    throw err;
                }
            }
            update(data, encoding) {
                if (this.#done) {
                    const err = new Error('Digest already called');
                    err.code = 'ERR_CRYPTO_HASH_FINALIZED';
                    throw err;
                }
                this.#chunks.push(plain(toBytes(data, encoding)));
                return this;
            }
            digest(encoding) {
                this.#done = true;
                const data = this.#chunks.length === 1 ? this.#chunks[0] : plain(Buffer.concat(this.#chunks));
                const bytes = this.#key === undefined ? h.hash(this.#algorithm, data) : h.hmac(this.#algorithm, plain(this.#key), data);
                return out(bytes, encoding);
            }
        }
        const keyBytes = (key) => {
            if (key && typeof key === 'object' && key.type === 'secret' && key.key) {
                return toBytes(key.key);
            }
            return toBytes(key, 'utf8');
        };
        const randomBytes = (n, callback) => {
            const size = Number(n);
            if (!Number.isInteger(size) || size < 0 || size > 1 << 20) {
                throw new RangeError(`randomBytes: size must be an integer from 0 to ${1 << 20}, got ${n}`);
            }
            const b = out(h.randomBytes(size));
            if (typeof callback === 'function') {
                setTimeout(() => callback(null, b), 0);
                return undefined;
            }
            return b;
        };
        const getRandomValues = (array) => {
            if (!ArrayBuffer.isView(array)) {
                throw new TypeError('getRandomValues: expected an integer TypedArray');
            }
            new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(h.randomBytes(array.byteLength));
            return array;
        };
        const crypto = {
            createHash: (algorithm) => new Hash(algorithm),
            createHmac: (algorithm, key) => new Hash(algorithm, keyBytes(key)),
            randomUUID: () => h.randomUUID(),
            randomBytes,
            getRandomValues,
            timingSafeEqual(a, b) {
                const x = toBytes(a);
                const y = toBytes(b);
                if (x.byteLength !== y.byteLength) {
                    const err = new RangeError('Input buffers must have the same byte length');
                    err.code = 'ERR_CRYPTO_TIMING_SAFE_EQUAL_LENGTH';
                    throw err;
                }
                let diff = 0;
                for (let i = 0; i < x.byteLength; i++) {
                    diff |= x[i] ^ y[i];
                }
                return diff === 0;
            },
        };
        crypto.webcrypto = { randomUUID: crypto.randomUUID, getRandomValues };
        return crypto;
    }

    // ------------------------------------------------------------------ querystring
    function makeQuerystring() {
        const escape = (s) => encodeURIComponent(String(s)).replace(FORM_SAFE, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
        const unescape = (s) => {
            try {
                return decodeURIComponent(s);
            } catch {
                return s;
            }
        };
        const value = (v) => (typeof v === 'string' ? v : typeof v === 'number' && Number.isFinite(v) ? String(v) : typeof v === 'bigint' || typeof v === 'boolean' ? String(v) : '');
        const stringify = (obj, sep = '&', eq = '=') => {
            if (!obj || typeof obj !== 'object') {
                return '';
            }
            return Object.keys(obj)
                .flatMap((k) => {
                    const v = obj[k];
                    const key = escape(k);
                    return Array.isArray(v) ? v.map((item) => key + eq + escape(value(item))) : [key + eq + escape(value(v))];
                })
                .join(sep);
        };
        const parse = (s, sep = '&', eq = '=') => {
            const result = Object.create(null);
            if (typeof s !== 'string' || s.length === 0) {
                return result;
            }
            for (const part of s.split(sep)) {
                if (!part) {
                    continue;
                }
                const i = part.indexOf(eq);
                const k = unescape((i < 0 ? part : part.slice(0, i)).replace(/\+/g, ' '));
                const v = i < 0 ? '' : unescape(part.slice(i + eq.length).replace(/\+/g, ' '));
                if (k in result) {
                    result[k] = Array.isArray(result[k]) ? [...result[k], v] : [result[k], v];
                } else {
                    result[k] = v;
                }
            }
            return result;
        };
        return { parse, stringify, escape, unescape, decode: parse, encode: stringify };
    }

    lazy(globalThis, 'URLSearchParams', makeURLSearchParams);
    lazy(globalThis, 'URL', makeURL);
    lazy(globalThis, 'Buffer', makeBuffer);
    lazy(globalThis, 'TextEncoder', makeTextEncoder);
    lazy(globalThis, 'TextDecoder', makeTextDecoder);
    lazy(globalThis, 'crypto', () => makeCrypto().webcrypto);
    globalThis.atob = atob;
    globalThis.btoa = btoa;
    globalThis.structuredClone = structuredClone;
    // The objects behind the Node modules (node.rs re-exports them).
    const modules = {};
    lazy(modules, 'crypto', makeCrypto);
    lazy(modules, 'url', () => ({ URL: globalThis.URL, URLSearchParams: globalThis.URLSearchParams }));
    lazy(modules, 'buffer', () => ({ Buffer: globalThis.Buffer, atob, btoa }));
    lazy(modules, 'querystring', makeQuerystring);
    Object.defineProperty(globalThis, '__lassoNode', { value: modules, enumerable: false });
})(globalThis.__lasso);
export {};
