"""Signs a webhook delivery with the provider's own Python SDK.

Input (stdin, JSON): provider, secret, body, url, timestamp (Unix seconds).
Output (stdout, JSON): the headers the provider would send.
"""

import datetime
import json
import sys


def main():
    req = json.load(sys.stdin)
    provider, secret, body = req["provider"], req["secret"], req["body"]
    ts = int(req["timestamp"])
    if provider == "stripe":
        from stripe import WebhookSignature

        sig = WebhookSignature._compute_signature(f"{ts}.{body}", secret)
        headers = {"Stripe-Signature": f"t={ts},v1={sig}"}
    elif provider == "svix":
        from svix.webhooks import Webhook

        when = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
        sig = Webhook(secret).sign("msg_gangway1", when, body)
        headers = {
            "svix-id": "msg_gangway1",
            "svix-timestamp": str(ts),
            "svix-signature": sig,
        }
    elif provider == "slack":
        from slack_sdk.signature import SignatureVerifier

        sig = SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=body)
        headers = {"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": str(ts)}
    elif provider == "twilio":
        from urllib.parse import parse_qsl

        from twilio.request_validator import RequestValidator

        params = dict(parse_qsl(body, keep_blank_values=True))
        sig = RequestValidator(secret).compute_signature(req["url"], params)
        headers = {
            "X-Twilio-Signature": sig,
            "Content-Type": "application/x-www-form-urlencoded",
        }
    else:
        raise SystemExit(f"unknown provider {provider}")
    json.dump(headers, sys.stdout)


if __name__ == "__main__":
    main()
