"""Checks a JUnit report as a CI server would read it, for tests/ci_definitions.rs.

    python3 check_junit.py REPORT.xml JUnit.xsd

Validates REPORT.xml against the schema with xmlschema, then reads it with junitparser and
prints what a test-report view would show, as JSON: each suite's counts and each case's result.
Exits 1 with the validator's or parser's own message when the report is not what CI reads.
"""

import json
import sys

import junitparser
import xmlschema


def main(report, schema):
    try:
        xmlschema.XMLSchema(schema).validate(report)
        xml = junitparser.JUnitXml.fromfile(report)
    except Exception as err:  # the message is what the test shows
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    suites = xml if isinstance(xml, junitparser.JUnitXml) else [xml]
    summary = []
    for suite in suites:
        cases = []
        for case in suite:
            if case.is_passed:
                result, message = "passed", None
            else:
                first = case.result[0]
                result = type(first).__name__.lower()
                message = first.message
            cases.append({
                "name": case.name,
                "classname": case.classname,
                "time": case.time,
                "result": result,
                "message": message,
            })
        summary.append({
            "name": suite.name,
            "tests": suite.tests,
            "failures": suite.failures,
            "skipped": suite.skipped,
            "cases": cases,
        })
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
