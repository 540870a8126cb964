#!/usr/bin/env python3
"""sshd AuthorizedKeysCommand backed by a moto EC2 server.

Usage (sshd_config):
    AuthorizedKeysCommand /usr/bin/python3 /abs/path/moto_authorized_keys.py http://127.0.0.1:PORT us-east-1 eu-west-3
    AuthorizedKeysCommandUser root

Prints the OpenSSH public key of every key pair that moto holds AND that is the
KeyName of an instance in state "running", in each region given (default
us-east-1). Stdlib only, so it runs under /usr/bin/python3 (moto lives in a
different interpreter).

Requests are unsigned: moto ignores the signature but needs an Authorization
header whose credential scope names the service ("ec2") and the region. Without
that header moto routes the request to S3.
"""
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

TIMEOUT_SECONDS = 5
# Lets tests tell these lookups apart from the builder's own calls in moto's
# request recording / access log.
USER_AGENT = "imgbuild-test-authorized-keys"
# sshd runs us with a scrubbed environment, but never go through a proxy anyway.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ec2_call(endpoint, region, action, params):
    body = urllib.parse.urlencode(
        {"Action": action, "Version": "2016-11-15", **params}
    ).encode()
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Authorization": "AWS4-HMAC-SHA256 "
            f"Credential=testing/20200101/{region}/ec2/aws4_request, "
            "SignedHeaders=host, Signature=x",
        },
    )
    with OPENER.open(request, timeout=TIMEOUT_SECONDS) as response:
        root = ET.fromstring(response.read())
    for element in root.iter():  # drop the XML namespace from tag names
        element.tag = element.tag.rpartition("}")[2]
    return root


def running_key_names(endpoint, region):
    root = ec2_call(endpoint, region, "DescribeInstances", {})
    names = set()
    for instance in root.iterfind("reservationSet/item/instancesSet/item"):
        if instance.findtext("instanceState/name") == "running":
            key_name = instance.findtext("keyName")
            if key_name:
                names.add(key_name)
    return names


def public_keys(endpoint, region):
    root = ec2_call(
        endpoint, region, "DescribeKeyPairs", {"IncludePublicKey": "true"}
    )
    keys = {}
    for key_pair in root.iterfind("keySet/item"):
        material = (key_pair.findtext("publicKey") or "").strip()
        if material:
            keys[key_pair.findtext("keyName")] = material
    return keys


def main(argv):
    if len(argv) < 2:
        print(f"usage: {argv[0]} ENDPOINT [REGION ...]", file=sys.stderr)
        return 2
    endpoint, regions = argv[1], argv[2:] or ["us-east-1"]
    lines = []
    for region in regions:
        wanted = running_key_names(endpoint, region)
        if not wanted:
            continue
        for name, material in sorted(public_keys(endpoint, region).items()):
            if name in wanted:
                # moto returns the imported text verbatim (comment, newlines);
                # keep one key per line for sshd.
                lines.extend(l.strip() for l in material.splitlines() if l.strip())
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
