/* tests/unit/test_errbuf.c — error messages: errbuf_set's formatting and
 * truncation, and errbuf_json_string, which must turn any bytes (a file name
 * from disk, a raw URL) into a JSON string: valid UTF-8 kept as it is, every
 * byte that does not start a valid sequence (stray continuation bytes,
 * overlong forms, surrogates, code points past U+10FFFF, cut-off sequences)
 * replaced by '?'. */
#include <string.h>

#include "store/errbuf.h"
#include "tests/tap.h"

static void lossy(const char *in, const char *want, const char *name) {
    json_t *j = errbuf_json_string(in);
    const char *got = json_string_value(j);
    ok(got && strcmp(got, want) == 0, "%s -> \"%s\"", name, got ? got : "(null)");
    json_decref(j);
}

int main(void) {
    char buf[16];
    ok(errbuf_set(buf, sizeof buf, "%s %d", "code", 42) == -1 && strcmp(buf, "code 42") == 0, "errbuf_set formats, -1");
    ok(errbuf_set(buf, sizeof buf, "%s", "a message longer than sixteen") == -1 && strlen(buf) == 15,
       "errbuf_set truncates to the buffer");
    ok(errbuf_set(NULL, 0, "x") == -1, "errbuf_set without a buffer");

    lossy("plain text", "plain text", "ASCII unchanged");
    lossy("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
          "2-, 3- and 4-byte sequences kept");
    lossy("bad\xff.safetensors", "bad?.safetensors", "0xFF byte");
    lossy("x\x80y", "x?y", "stray continuation byte");
    lossy("\xc0\xaf", "??", "overlong '/'");
    lossy("\xe0\x80\xaf", "???", "overlong 3-byte");
    lossy("\xed\xa0\x80", "???", "UTF-16 surrogate");
    lossy("\xf4\x90\x80\x80", "????", "past U+10FFFF");
    lossy("cut\xe2\x82", "cut??", "sequence cut off at the end");
    lossy("a\xe2\x82" "b", "a??b", "sequence cut off by ASCII");
    lossy("tab\tnewline\n", "tab\tnewline\n", "control characters are JSON-escapable: kept");
    lossy(NULL, "", "NULL is the empty string");
    return tap_done();
}
