// Masking core: content detectors and masking strategies on UTF-8 bytes,
// independent of any protocol. The text below is written for the README.
//
// ## What the content detectors catch
//
// All detectors work on the raw UTF-8 bytes of one value; offsets are byte
// offsets. "Touching" means the byte right before/after the match; the edges
// of the value count as boundaries. Non-ASCII characters are boundaries
// too, except inside an email's local part.
//
// credit_card  13–19 digits, either contiguous or in groups of >= 3 digits
//              joined by one consistent separator, a single space or a
//              single dash ("4111 1111 1111 1111", "4111-1111-1111-1111",
//              "4111111111111111", "3782 822463 10005"). Must pass Luhn and
//              the issuer table: Visa 4 (13, 16, 19 digits); Mastercard 51–55
//              and 2221–2720 (16); Amex 34, 37 (15); Diners 300–305, 3095, 36,
//              38, 39 (14–19); JCB 3528–3589 (16–19); Maestro 50, 56–59
//              (13–19); 60–69 (13–19: Discover 6011/644–649/65, UnionPay 62,
//              Maestro 6x). Prefixes 0, 1, 7, 8, 9 are never cards. Not a
//              card: a contiguous run of more than 19 digits, a number touching
//              a letter or digit, or continued by '.'+digit (decimals,
//              versions). In a longer separated run the card is the longest
//              valid run of whole groups ("4111 1111 1111 1111 2024" masks the
//              first four groups).
// email        local@domain. Local part: letters, digits, UTF-8 characters
//              and ! # $ % & * + - / = ? ^ _ ~ with single dots (no leading,
//              trailing or double dot), <= 64 bytes — RFC 5322 atext without
//              ' ` { | }, which delimit addresses in SQL, JSON and templates.
//              Domain: >= 2 labels of [A-Za-z0-9-] (1–63, no leading or
//              trailing '-'), TLD of >= 2 letters, <= 253 bytes. Any case.
//              Not matched: quoted local parts, IP-literal or non-ASCII
//              domains, "user@localhost", "a @ b", "x@y.z".
// us_ssn       AAA-GG-SSSS with dashes only; area not 000, 666 or 900–999,
//              group not 00, serial not 0000. Not matched: bare 9 digits or
//              spaced forms (too ambiguous), a number touching a letter or
//              digit or continued by '-'/'.'+digit.
// phone        E.164: '+', a first digit 1–9, then digit groups joined by one
//              space, dash or dot, or bracketed groups "(0)", "(555)"; 8–15
//              digits ("+1 (555) 123-4567", "+44 20 7946 0958",
//              "+33 1 23 45 67 89", "+14155552671"). North American:
//              "(555) 123-4567", "(555)123-4567", "(555) 123.4567",
//              "(555) 123 4567", "555-123-4567", "555.123.4567", optionally
//              "1-" / "1." first (same separator); the area code starts with
//              2–9. Not matched: dates ("2024-01-15", "+2024-01-15"), versions,
//              IP addresses, bare 10 digits, space-only "555 123 4567", mixed
//              separators, numbers touching a letter/digit or continued by
//              '-'/'.'+digit, '+' touching a letter or digit.
// iban         Country code (2 capitals), 2 check digits, BBAN of capitals and
//              digits, compact ("DE89370400440532013000") or in groups of 4
//              with single spaces ("DE89 3704 0044 0532 0130 00"). mod-97 must
//              be 1 and the length must match the country (table of 77
//              countries: all SEPA members, GB and the other long-standing
//              registry members); unknown countries: 15–34 characters.
//              Uppercase only; not touching a letter or digit.
// aws_access_key  AKIA, ASIA, ABIA or ACCA + 16 of [A-Z0-9], with no letter,
//              digit or '_' on either side. Secret access keys (40 base64
//              chars) have no recognisable shape; mask them after their label
//              with a custom detector, e.g.
//              (?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}
// jwt          "eyJ…": 3 (JWS) or 5 (JWE) base64url segments joined by '.',
//              >= 30 bytes, the first segment decoding to a JSON object with a
//              string "alg". The JWS signature may be empty (alg "none"), the
//              JWE key segment too ("dir"). A sentence's final '.' is not a
//              segment. Not preceded by a base64url character or '.'.
// private_key  "-----BEGIN <label>-----" where <label> ends in "PRIVATE KEY"
//              (RSA, EC, DSA, OPENSSH, ENCRYPTED, PKCS#8) or "PRIVATE KEY
//              BLOCK" (PGP), through the matching "-----END <label>-----";
//              without one, to the end of the value. Public keys and
//              certificates are not matched.
// custom       RE2 patterns (linear time, no backtracking; (?i) etc. allowed).
//              A pattern that does not compile, or matches the empty string,
//              is a configuration error naming the detector.
//
// Overlaps: the longest finding wins, then the earliest; a finding that
// overlaps a winner keeps only the part the winner does not cover, so no
// byte any detector flagged is left unmasked.
//
// ## Strategies
//
// redact   whole value: "****"; a finding inside text: "[REDACTED:<detector>]".
// partial  cards, SSNs, phones: every digit but the last 4 becomes '*',
//          separators stay ("**** **** **** 1111", "***-**-6789"); email:
//          "****@domain"; IBAN: letters and digits but the last 4 become '*';
//          private keys: as redact; anything else: "****" + the last 4
//          characters (values shorter than 8 characters keep nothing).
// hash     "h:" + 12 hex characters (the first 48 bits of HMAC-SHA256 with
//          the gateway's key) of the value, normalised per detector (digits
//          only for cards, SSNs and phones; uppercase letters and digits for
//          IBANs; lowercase for emails), so equal data gives equal tokens and
//          joins and GROUP BY still work.
// null     SQL NULL for a whole value; inside text, as redact.
//
// ## HTTP bodies (JSON, NDJSON, CSV, server-sent events)
//
// fields   JSON paths: $ (the whole document), .name, ['name'], [*], .*, [n],
//          and .. before any of them for "at any depth" ($..card). A field rule
//          masks the whole value: a string with the strategy's whole-value form;
//          a number or boolean becomes a JSON string ("****", "h:…"); strategy
//          null gives JSON null; an object or array: every scalar inside is
//          masked so. The first matching field rule wins, then columns.
// columns  a rule with a bare name (email) also masks a JSON member of that
//          name at any depth, and a CSV column named so in the header row.
// detectors scan every JSON string value after its escapes are decoded
//          ("a\u0040b.com" is an email; the masked value is re-escaped), JSON
//          numbers of 13+ characters (cards sent as numbers become strings),
//          every CSV cell, and SSE lines (data: JSON by the rules above).
//          Member names are not scanned. Everything else keeps its bytes.
// Limits   a single value longer than 1 MiB under masking goes out as
//          "****" (nothing is buffered without bound); JSON that is not well
//          formed is masked as text (detectors only) from the first bad byte on.
export { Scanner, resolveOverlaps } from './scanner.js';
export { maskFindings, maskValue, redactMarker, type MaskContext } from './strategies.js';
export {
  DETECTOR_NAMES,
  STRATEGIES,
  isDetectorName,
  isStrategy,
  type CustomDetector,
  type DetectorName,
  type Finding,
  type Strategy,
} from './types.js';
