/* Reading frame payloads: NUL-terminated strings, strict decimals, users. */
#include "agent.h"

/* Number of NUL-terminated strings in a payload, or -1 if it does not end with a NUL. */
int count_strings(const unsigned char *p, size_t len)
{
    if (len == 0) return 0;
    if (p[len - 1] != 0) return -1;
    int n = 0;
    for (size_t i = 0; i < len; i++) n += p[i] == 0;
    return n;
}

/* Points out[i] at each string of a payload that count_strings() accepted (no copies). */
void split_strings(const unsigned char *p, size_t len, const char **out)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == 0) {
            *out++ = (const char *)p + start;
            start = i + 1;
        }
    }
}

/* Strict unsigned decimal: digits only, no sign or blanks, value <= max. */
bool parse_decimal(const char *s, unsigned long max, unsigned long *out)
{
    if (!*s) return false;
    unsigned long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        unsigned d = *s - '0';
        if (v > (max - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/*
 * "uid" or "uid:gid", numeric. A bare uid runs with gid 0, as OCI runtimes do for a uid
 * without a passwd entry: the engine resolves names and primary groups on the host side.
 */
bool parse_user(const char *s, uid_t *uid, gid_t *gid)
{
    char buf[64];
    size_t n = strlen(s);
    if (n >= sizeof buf) return false;
    memcpy(buf, s, n + 1);
    char *colon = strchr(buf, ':');
    if (colon) *colon = 0;
    unsigned long u, g = 0;
    /* (uid_t)-1 means "unchanged" to setuid(), so it is not a valid id */
    if (!parse_decimal(buf, UINT32_MAX - 1, &u)) return false;
    if (colon && !parse_decimal(colon + 1, UINT32_MAX - 1, &g)) return false;
    *uid = u;
    *gid = g;
    return true;
}
