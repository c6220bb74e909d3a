/*
 * ipcs / ipcmk / ipcrm for kubelite's offline images (Debian's busybox-static has no
 * System V IPC applets). One static multi-call binary, chosen by argv[0]; the output
 * follows util-linux closely enough for scripts and tests ("Shared memory id: N",
 * the "------ Shared Memory Segments --------" table).
 *
 * Build: gcc -static -O2 -o ipctools ipctools.c
 *
 *   ipcmk -M SIZE [-p MODE] | -Q [-p MODE] | -S NSEMS [-p MODE]
 *   ipcs [-m] [-q] [-s] [-a]
 *   ipcrm [-m ID] [-q ID] [-s ID] [-M KEY] [-Q KEY] [-S KEY] [-a|--all]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

static const char *prog;

static long long parse_size(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    long long mul = 1;
    switch (*end) {
    case 0: break;
    case 'K': case 'k': mul = 1024; break;
    case 'M': case 'm': mul = 1024 * 1024; break;
    case 'G': case 'g': mul = 1024LL * 1024 * 1024; break;
    default: return -1;
    }
    return (long long)(v * (double)mul);
}

static void owner_name(unsigned uid, char *out, size_t cap) {
    snprintf(out, cap, "%u", uid);
    FILE *f = fopen("/etc/passwd", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *name = strtok(line, ":");
        strtok(NULL, ":");
        char *id = strtok(NULL, ":");
        if (name && id && (unsigned)strtoul(id, NULL, 10) == uid) {
            snprintf(out, cap, "%s", name);
            break;
        }
    }
    fclose(f);
}

/* ---------------------------------------------------------------- ipcmk */
static int ipcmk(int argc, char **argv) {
    long long shm = -1;
    int queue = 0, nsems = -1, mode = 0644, opt;
    while ((opt = getopt(argc, argv, "M:QS:p:h")) != -1) {
        switch (opt) {
        case 'M': shm = parse_size(optarg); break;
        case 'Q': queue = 1; break;
        case 'S': nsems = atoi(optarg); break;
        case 'p': mode = (int)strtol(optarg, NULL, 8); break;
        default:
            fprintf(stderr, "usage: %s -M size | -Q | -S nsems [-p mode]\n", prog);
            return 1;
        }
    }
    if (shm < 0 && !queue && nsems < 0) {
        fprintf(stderr, "usage: %s -M size | -Q | -S nsems [-p mode]\n", prog);
        return 1;
    }
    int rc = 0;
    if (shm >= 0) {
        int id = shmget(IPC_PRIVATE, (size_t)shm, mode | IPC_CREAT);
        if (id < 0) { fprintf(stderr, "%s: create share memory failed: %s\n", prog, strerror(errno)); rc = 1; }
        else printf("Shared memory id: %d\n", id);
    }
    if (queue) {
        int id = msgget(IPC_PRIVATE, mode | IPC_CREAT);
        if (id < 0) { fprintf(stderr, "%s: create message queue failed: %s\n", prog, strerror(errno)); rc = 1; }
        else printf("Message queue id: %d\n", id);
    }
    if (nsems >= 0) {
        int id = semget(IPC_PRIVATE, nsems, mode | IPC_CREAT);
        if (id < 0) { fprintf(stderr, "%s: create semaphore failed: %s\n", prog, strerror(errno)); rc = 1; }
        else printf("Semaphore id: %d\n", id);
    }
    return rc;
}

/* ---------------------------------------------------------------- ipcs */
static void show(const char *file, const char *title, const char *header, int kind) {
    printf("\n------ %s --------\n%s\n", title, header);
    FILE *f = fopen(file, "r");
    if (!f) return;
    char line[1024];
    if (!fgets(line, sizeof line, f)) { fclose(f); return; }  /* column names */
    while (fgets(line, sizeof line, f)) {
        long long v[12] = {0};
        int n = sscanf(line, "%lld %lld %llo %lld %lld %lld %lld %lld %lld %lld %lld %lld",
                       &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11]);
        if (n < 6) continue;
        char owner[64];
        if (kind == 'm') {  /* key shmid perms size cpid lpid nattch uid ... */
            owner_name((unsigned)v[7], owner, sizeof owner);
            printf("0x%08llx %-10lld %-10s %-10llo %-10lld %-10lld %s\n", (unsigned long long)(unsigned)v[0], v[1],
                   owner, v[2] & 0777, v[3], v[6], (v[2] & 01000) ? "dest" : "");
        } else if (kind == 'q') {  /* key msqid perms cbytes qnum lspid lrpid uid ... */
            owner_name((unsigned)v[7], owner, sizeof owner);
            printf("0x%08llx %-10lld %-10s %-10llo %-12lld %-12lld\n", (unsigned long long)(unsigned)v[0], v[1],
                   owner, v[2] & 0777, v[3], v[4]);
        } else {  /* key semid perms nsems uid ... */
            owner_name((unsigned)v[4], owner, sizeof owner);
            printf("0x%08llx %-10lld %-10s %-10llo %-10lld\n", (unsigned long long)(unsigned)v[0], v[1], owner,
                   v[2] & 0777, v[3]);
        }
    }
    fclose(f);
}

static int ipcs(int argc, char **argv) {
    int m = 0, q = 0, s = 0, opt;
    while ((opt = getopt(argc, argv, "mqsa")) != -1) {
        switch (opt) {
        case 'm': m = 1; break;
        case 'q': q = 1; break;
        case 's': s = 1; break;
        case 'a': m = q = s = 1; break;
        default: fprintf(stderr, "usage: %s [-m] [-q] [-s] [-a]\n", prog); return 1;
        }
    }
    if (!m && !q && !s) m = q = s = 1;
    if (q) show("/proc/sysvipc/msg", "Message Queues",
                "key        msqid      owner      perms      used-bytes   messages    ", 'q');
    if (m) show("/proc/sysvipc/shm", "Shared Memory Segments",
                "key        shmid      owner      perms      bytes      nattch     status      ", 'm');
    if (s) show("/proc/sysvipc/sem", "Semaphore Arrays",
                "key        semid      owner      perms      nsems     ", 's');
    printf("\n");
    return 0;
}

/* ---------------------------------------------------------------- ipcrm */
static int rm_all(const char *file, int kind) {
    FILE *f = fopen(file, "r");
    if (!f) return 0;
    char line[1024];
    int rc = 0;
    if (!fgets(line, sizeof line, f)) { fclose(f); return 0; }
    while (fgets(line, sizeof line, f)) {
        long long key, id;
        if (sscanf(line, "%lld %lld", &key, &id) != 2) continue;
        int r = kind == 'm' ? shmctl((int)id, IPC_RMID, NULL)
              : kind == 'q' ? msgctl((int)id, IPC_RMID, NULL) : semctl((int)id, 0, IPC_RMID);
        if (r != 0) rc = 1;
    }
    fclose(f);
    return rc;
}

static int ipcrm(int argc, char **argv) {
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-a") || !strcmp(a, "--all")) {
            rc |= rm_all("/proc/sysvipc/shm", 'm') | rm_all("/proc/sysvipc/msg", 'q') | rm_all("/proc/sysvipc/sem", 's');
            continue;
        }
        if (a[0] != '-' || !a[1] || a[2] || i + 1 >= argc) {
            fprintf(stderr, "usage: %s [-m|-q|-s ID] [-M|-Q|-S KEY] [-a]\n", prog);
            return 1;
        }
        char c = a[1];
        long long v = strtoll(argv[++i], NULL, 0);
        int id = (int)v, r;
        if (c == 'M') id = shmget((key_t)v, 0, 0);
        else if (c == 'Q') id = msgget((key_t)v, 0);
        else if (c == 'S') id = semget((key_t)v, 0, 0);
        if (id < 0) { fprintf(stderr, "%s: invalid key (%s)\n", prog, argv[i]); rc = 1; continue; }
        switch (c) {
        case 'm': case 'M': r = shmctl(id, IPC_RMID, NULL); break;
        case 'q': case 'Q': r = msgctl(id, IPC_RMID, NULL); break;
        case 's': case 'S': r = semctl(id, 0, IPC_RMID); break;
        default: fprintf(stderr, "%s: unknown option %s\n", prog, a); return 1;
        }
        if (r != 0) { fprintf(stderr, "%s: %s %s: %s\n", prog, a, argv[i], strerror(errno)); rc = 1; }
    }
    return rc;
}

int main(int argc, char **argv) {
    prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (!strcmp(prog, "ipctools") && argc > 1) {
        argv++;
        argc--;
        prog = argv[0];
    }
    if (!strcmp(prog, "ipcmk")) return ipcmk(argc, argv);
    if (!strcmp(prog, "ipcs")) return ipcs(argc, argv);
    if (!strcmp(prog, "ipcrm")) return ipcrm(argc, argv);
    fprintf(stderr, "usage: ipctools ipcs|ipcmk|ipcrm ...\n");
    return 1;
}
