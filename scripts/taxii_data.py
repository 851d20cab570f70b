#!/usr/bin/env python3
"""Writes a medallion (TAXII 2.1 reference server) configuration and a generated STIX 2.1
collection, for feedstix's TAXII tests and for trying a TAXII feed by hand.

    taxii_data.py --dir DIR --port PORT [--objects 1000] [--page-size 100]

Writes DIR/medallion.json (memory backend, one basic-auth user, max page size) and
DIR/data.json (one API root "feedstix" with one readable, writable collection). The
objects are identities, malware, indicators and relationships between them, valid
STIX 2.1, each with its own date_added one second apart and with microseconds, so that
added_after and paging have something to bite on. Output is deterministic.
"""
import argparse
import datetime as dt
import json
import os
import uuid

API_ROOT = "feedstix"
COLLECTION = "3f1c9a52-7d4e-4b8a-9c61-0e2d5b7a8f10"
USER = "reader"
PASSWORD = "medallion-test-password"
NAMESPACE = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")
ADDED_START = dt.datetime(2024, 2, 1, tzinfo=dt.timezone.utc)
CREATED_START = dt.datetime(2023, 6, 1, tzinfo=dt.timezone.utc)


def stamp_ms(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def stamp_us(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sid(kind, n):
    return "%s--%s" % (kind, uuid.uuid5(NAMESPACE, "feedstix-taxii-%s-%d" % (kind, n)))


def objects(total):
    """Splits `total` into 5 % identities, 10 % malware, 60 % indicators, the rest
    relationships (indicator indicates malware)."""
    identities = max(1, total * 5 // 100)
    malware = max(1, total * 10 // 100)
    indicators = max(1, total * 60 // 100)
    relationships = max(0, total - identities - malware - indicators)
    out = []
    for n in range(total):
        created = stamp_ms(CREATED_START + dt.timedelta(minutes=n))
        common = {"spec_version": "2.1", "created": created, "modified": created}
        if n < identities:
            o = {"type": "identity", "id": sid("identity", n), "name": "Sharing member %d" % n,
                 "identity_class": "organization"}
        elif n < identities + malware:
            o = {"type": "malware", "id": sid("malware", n), "name": "Example family %d" % n,
                 "is_family": True, "malware_types": ["trojan"]}
        elif n < identities + malware + indicators:
            k = n - identities - malware
            o = {"type": "indicator", "id": sid("indicator", n),
                 "name": "Host %d" % k, "indicator_types": ["malicious-activity"],
                 "pattern": "[domain-name:value = 'host-%d.example.test']" % k,
                 "pattern_type": "stix", "valid_from": created}
        else:
            k = n - identities - malware - indicators
            source = identities + malware + (k % indicators)
            target = identities + (k % malware)
            o = {"type": "relationship", "id": sid("relationship", n),
                 "relationship_type": "indicates",
                 "source_ref": sid("indicator", source), "target_ref": sid("malware", target)}
        o.update(common)
        out.append(o)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--objects", type=int, default=1000)
    p.add_argument("--page-size", type=int, default=100)
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    objs = objects(a.objects)
    manifest = []
    for n, o in enumerate(objs):
        added = ADDED_START + dt.timedelta(seconds=n, microseconds=(n * 137) % 1000000)
        manifest.append({"id": o["id"], "date_added": stamp_us(added), "version": o["modified"],
                         "media_type": "application/stix+json;version=2.1"})
    base = "http://127.0.0.1:%d/" % a.port
    data = {
        "/discovery": {
            "title": "feedstix test TAXII server",
            "description": "Generated collection for feedstix's TAXII tests",
            "default": base + API_ROOT + "/",
            "api_roots": [base + API_ROOT + "/"],
        },
        API_ROOT: {
            "information": {
                "title": "feedstix test root",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 10485760,
            },
            "status": [],
            "collections": [{
                "id": COLLECTION,
                "title": "Generated indicators, malware, identities, relationships",
                "can_read": True,
                "can_write": True,
                "media_types": ["application/stix+json;version=2.1"],
                "objects": objs,
                "manifest": manifest,
            }],
        },
    }
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": os.path.abspath(os.path.join(a.dir, "data.json")),
            # A walk of many slow pages must outlive medallion's default 30 s token life.
            "session_timeout": 3600,
            "check_interval": 60,
        },
        "users": {USER: PASSWORD},
        "taxii": {"max_page_size": a.page_size},
    }
    with open(os.path.join(a.dir, "data.json"), "w") as f:
        json.dump(data, f)
    with open(os.path.join(a.dir, "medallion.json"), "w") as f:
        json.dump(config, f, indent=1)
    print(json.dumps({"api_root": base + API_ROOT + "/", "collection": COLLECTION,
                      "user": USER, "password": PASSWORD}))


if __name__ == "__main__":
    main()
