// Runs oauth2-mock-server (a real OAuth 2 server) for one test, on 127.0.0.1 and an ephemeral
// port. Prints `READY <issuer url>`, then one JSON line per token response it sends. Exits when
// its stdin closes, so it never outlives the test that started it.
//
// MOCK_CODE_EXPIRES_IN: `expires_in` of the tokens the authorization-code grant returns (the
// default is an hour), to make a token expire soon.
'use strict';

const { OAuth2Server } = require('oauth2-mock-server');
const basicAuth = require('basic-auth');

async function main() {
    const server = new OAuth2Server();
    await server.issuer.keys.generate('RS256');
    await server.start(0, '127.0.0.1');
    // The library names the issuer `localhost`; say where it really listens.
    const { address, port } = server.address();
    server.issuer.url = `http://${address}:${port}`;

    const codeExpiresIn = process.env.MOCK_CODE_EXPIRES_IN;
    server.service.on('beforeResponse', (response, req) => {
        const body = req.body || {};
        if (codeExpiresIn && body.grant_type === 'authorization_code') {
            response.body.expires_in = Number(codeExpiresIn);
        }
        const client = basicAuth(req);
        const record = {
            grant_type: body.grant_type ?? null,
            code_verifier: body.code_verifier ?? null,
            redirect_uri: body.redirect_uri ?? null,
            refresh_token: body.refresh_token ?? null,
            scope: body.scope ?? null,
            client_id: body.client_id ?? null,
            client_secret: body.client_secret ?? null,
            basic_client_id: client ? client.name : null,
            status: response.statusCode,
        };
        process.stdout.write(JSON.stringify(record) + '\n');
    });

    process.stdout.write(`READY ${server.issuer.url}\n`);
    process.stdin.resume();
    process.stdin.on('end', () => {
        server.stop().finally(() => process.exit(0));
    });
}

main().catch((err) => {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
});
