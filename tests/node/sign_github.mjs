// Signs a webhook body the way GitHub does, with GitHub's own library.
// Usage: node sign_github.mjs <secret> <body-file>; prints the header value.
import { readFileSync } from "node:fs";
import { sign } from "@octokit/webhooks-methods";

const [secret, bodyFile] = process.argv.slice(2);
const body = readFileSync(bodyFile, "utf8");
process.stdout.write(await sign(secret, body));
