#!/usr/bin/env python3
"""Checks a Blackbox evidence PDF against the parts of PDF/A-3a (ISO 19005-3, level A) that a
program can check, with pikepdf (qpdf) only: an implementation independent of the one that
wrote the file (krilla), which also validates as it writes.

Checked, each named when it fails:
  - the file parses (qpdf) and is not encrypted; PDF version 1.7 or lower;
  - XMP metadata declares pdfaid:part 3 and pdfaid:conformance A, and names a title;
  - an output intent of subtype GTS_PDFA1 with an embedded ICC profile;
  - tagged: /MarkInfo /Marked true, a /StructTreeRoot with a ParentTree and children, every
    structure element of a standard type (ISO 32000-1 14.8.4) or role-mapped to one, every
    /Figure with an /Alt text, every /Link holding its annotation;
  - /Lang on the catalog (a BCP 47 tag);
  - every font embedded (FontFile, FontFile2 or FontFile3) with a /ToUnicode map;
  - no JavaScript, no launch actions; every annotation printable (/F with the Print flag);
  - every embedded file has /Subtype (a MIME type), /Params /ModDate, an /AFRelationship, a
    description, and is listed in the catalog's /AF array;
  - with --attachment NAME: that file is embedded (several may be given).

Not checked (a full validator such as veraPDF does; it is not in the registries reachable
here): content stream operators against the PDF/A restrictions, colour spaces of every
operator, the XMP schema's extension rules, glyph widths against the font programs.

Usage: check_pdfa.py FILE.pdf [--attachment NAME]...   exit 0 OK, 1 a check failed, 2 usage.
"""

import re
import sys

try:
    import pikepdf
except ImportError:  # pragma: no cover
    print("pikepdf is needed: python3 -m pip install -r tools/requirements-pdf.txt", file=sys.stderr)
    sys.exit(2)

STANDARD_TYPES = {
    "Document", "Part", "Art", "Sect", "Div", "BlockQuote", "Caption", "TOC", "TOCI", "Index",
    "NonStruct", "Private", "P", "H", "H1", "H2", "H3", "H4", "H5", "H6", "L", "LI", "Lbl",
    "LBody", "Table", "TR", "TH", "TD", "THead", "TBody", "TFoot", "Span", "Quote", "Note",
    "Reference", "BibEntry", "Code", "Link", "Annot", "Ruby", "RB", "RT", "RP", "Warichu", "WT",
    "WP", "Figure", "Formula", "Form",
}


def main(argv):
    args = argv[1:]
    if not args or args[0].startswith("-"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    path = args[0]
    wanted = []
    rest = args[1:]
    while rest:
        if rest[0] == "--attachment" and len(rest) > 1:
            wanted.append(rest[1])
            rest = rest[2:]
        else:
            print(f"unknown argument {rest[0]}", file=sys.stderr)
            return 2
    failures = []

    def fail(what):
        failures.append(what)

    try:
        pdf = pikepdf.open(path)
    except Exception as e:  # noqa: BLE001 - any parse failure is a finding
        print(f"FAILED: {path} does not parse: {e}")
        return 1
    root = pdf.Root
    if pdf.is_encrypted:
        fail("the file is encrypted")
    if float(pdf.pdf_version) > 1.7:
        fail(f"PDF version {pdf.pdf_version} (PDF/A-3 is based on PDF 1.7)")

    # XMP identification.
    xmp = ""
    if "/Metadata" in root:
        xmp = root.Metadata.read_bytes().decode("utf-8", "replace")
    else:
        fail("no XMP metadata stream on the catalog")
    part = re.search(r"pdfaid:part(?:>|=\")\s*(\d)", xmp)
    conf = re.search(r"pdfaid:conformance(?:>|=\")\s*([ABUabu])", xmp)
    if not part or part.group(1) != "3":
        fail("XMP does not declare pdfaid:part 3")
    if not conf or conf.group(1).upper() != "A":
        fail("XMP does not declare pdfaid:conformance A")
    if "dc:title" not in xmp:
        fail("XMP names no dc:title")

    # Output intent.
    intents = root.get("/OutputIntents", [])
    if not any(i.get("/S") == "/GTS_PDFA1" and "/DestOutputProfile" in i for i in intents):
        fail("no GTS_PDFA1 output intent with an ICC profile")

    # Tagging.
    mark = root.get("/MarkInfo")
    if mark is None or not bool(mark.get("/Marked", False)):
        fail("not marked as tagged (/MarkInfo /Marked true)")
    tree = root.get("/StructTreeRoot")
    counts = {}
    if tree is None:
        fail("no structure tree (/StructTreeRoot)")
    else:
        if "/ParentTree" not in tree:
            fail("the structure tree has no /ParentTree")
        role_map = {str(k): str(v) for k, v in tree.get("/RoleMap", {}).items()}
        stack = list(tree.get("/K", []) if isinstance(tree.get("/K"), pikepdf.Array) else [tree.get("/K")])
        seen = 0
        while stack:
            node = stack.pop()
            if not isinstance(node, pikepdf.Dictionary) or node.get("/Type") in ("/MCR", "/OBJR"):
                continue
            if "/S" not in node:
                continue
            seen += 1
            s = str(node.S)[1:]
            mapped = role_map.get("/" + s, "/" + s)[1:]
            counts[mapped] = counts.get(mapped, 0) + 1
            if mapped not in STANDARD_TYPES:
                fail(f"structure element /{s} is not a standard type nor role-mapped to one")
            if mapped == "Figure" and not str(node.get("/Alt", "")).strip():
                fail("a /Figure has no /Alt text")
            kids = node.get("/K")
            if mapped == "Link":
                kid_list = kids if isinstance(kids, pikepdf.Array) else [kids]
                if not any(isinstance(k, pikepdf.Dictionary) and k.get("/Type") == "/OBJR" for k in kid_list):
                    fail("a /Link element does not hold its annotation (/OBJR)")
            if isinstance(kids, pikepdf.Array):
                stack.extend(kids)
            elif isinstance(kids, pikepdf.Dictionary):
                stack.append(kids)
        if seen == 0:
            fail("the structure tree is empty")
        for needed in ("P", "Table", "TH", "TD"):
            if counts.get(needed, 0) == 0:
                fail(f"no /{needed} element in the structure tree")
    lang = str(root.get("/Lang", ""))
    if not re.fullmatch(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*", lang):
        fail(f"no valid /Lang on the catalog ({lang!r})")

    # Fonts, annotations, actions.
    if "/Names" in root and "/JavaScript" in root.Names:
        fail("document-level JavaScript")
    fonts_seen = set()
    for n, page in enumerate(pdf.pages, start=1):
        res = page.obj.get("/Resources", {})
        for name, font in res.get("/Font", {}).items():
            if font.objgen in fonts_seen:
                continue
            fonts_seen.add(font.objgen)
            descs = []
            if "/DescendantFonts" in font:
                descs = [d.get("/FontDescriptor") for d in font.DescendantFonts]
            else:
                descs = [font.get("/FontDescriptor")]
            for d in descs:
                if d is None or not any(k in d for k in ("/FontFile", "/FontFile2", "/FontFile3")):
                    fail(f"page {n}: font {name} is not embedded")
            if "/ToUnicode" not in font:
                fail(f"page {n}: font {name} has no /ToUnicode map")
        for annot in page.obj.get("/Annots", []):
            if int(annot.get("/F", 0)) & 4 == 0:
                fail(f"page {n}: an annotation is not printable (/F lacks Print)")
            action = annot.get("/A")
            if action is not None and action.get("/S") in ("/JavaScript", "/Launch"):
                fail(f"page {n}: an annotation runs {action.get('/S')}")

    # Embedded files (PDF/A-3 associated files).
    af = [f.objgen for f in root.get("/AF", [])]
    names = []
    embedded = root.get("/Names", {}).get("/EmbeddedFiles", {}).get("/Names", [])
    for i in range(0, len(embedded), 2):
        name, spec = str(embedded[i]), embedded[i + 1]
        names.append(name)
        if spec.objgen not in af:
            fail(f"embedded file {name} is not listed in the catalog's /AF")
        if "/AFRelationship" not in spec:
            fail(f"embedded file {name} has no /AFRelationship")
        if not str(spec.get("/Desc", "")).strip():
            fail(f"embedded file {name} has no description")
        stream = spec.get("/EF", {}).get("/F")
        if stream is None:
            fail(f"embedded file {name} has no stream")
            continue
        if "/Subtype" not in stream:
            fail(f"embedded file {name} has no MIME type (/Subtype)")
        if "/ModDate" not in stream.get("/Params", {}):
            fail(f"embedded file {name} has no /Params /ModDate")
    for w in wanted:
        if w not in names:
            fail(f"{w} is not embedded (embedded: {', '.join(names) or 'none'})")

    if failures:
        print(f"FAILED: {path}")
        for f in failures:
            print(f"  - {f}")
        return 1
    print(
        f"OK — {path}: PDF/A-3a declared, tagged ({sum(counts.values())} structure elements), "
        f"lang {lang}, {len(fonts_seen)} fonts embedded, {len(names)} associated file(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
