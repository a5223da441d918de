/* LIST: directory entries with size, mode and modification time. */
#include "agent.h"

void list_dir(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    if (count_strings(p, len) != 1) {
        send_error(a, id, "malformed LIST payload");
        return;
    }
    const char *path = (const char *)p;
    DIR *d = opendir(path);
    if (!d) {
        send_error(a, id, "list %s: %s", path, strerror(errno));
        return;
    }
    unsigned char *buf = xmalloc(MAX_PAYLOAD);
    size_t used = 0;
    struct dirent *de;
    for (;;) {
        errno = 0;
        if (!(de = readdir(d))) break;
        const char *name = de->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue; /* gone meanwhile */
        char rec[NAME_MAX + 1 + STAT_FIELDS_MAX];
        size_t nl = strlen(name);
        if (nl > NAME_MAX) continue; /* cannot happen on Linux; keeps rec safe */
        memcpy(rec, name, nl + 1);
        size_t rl = nl + 1 + stat_fields(rec + nl + 1, &st);
        if (used + rl > MAX_PAYLOAD) {
            send_frame(a, T_ENTRIES, id, buf, used);
            used = 0;
        }
        memcpy(buf + used, rec, rl);
        used += rl;
    }
    int err = errno;
    if (used > 0) send_frame(a, T_ENTRIES, id, buf, used);
    if (err) send_error(a, id, "list %s: %s", path, strerror(err));
    else send_frame(a, T_OK, id, NULL, 0);
    free(buf);
    closedir(d);
}
