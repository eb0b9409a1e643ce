/*
 * The floor: a C client with libmodbus (Debian libmodbus-dev) issuing the
 * same reads as pqwatch's plan, in a tight blocking loop on one connection,
 * cycling over the unit ids of one simulated gateway. It decodes every
 * register pair as an f32 (ABCD), about the least work a poller can do with
 * the answer, and reports its own CPU time per request (getrusage) and the
 * round trip of every request.
 *
 * Build: gcc -O2 -o modbus_floor modbus_floor.c $(pkg-config --cflags --libs libmodbus)
 * Usage: modbus_floor HOST PORT UNITS READS SECONDS
 *   READS: the plan, "fc:start:count[,fc:start:count...]" (fc 3 or 4)
 * Prints one JSON object on stdout.
 */
#include <errno.h>
#include <math.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_READS 64
#define MAX_SAMPLES 4000000

struct read { int fc, start, count; };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT UNITS READS SECONDS\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    int units = atoi(argv[3]);
    double seconds = atof(argv[5]);
    struct read reads[MAX_READS];
    int nreads = 0;
    char *spec = strdup(argv[4]);
    for (char *tok = strtok(spec, ","); tok && nreads < MAX_READS; tok = strtok(NULL, ",")) {
        if (sscanf(tok, "%d:%d:%d", &reads[nreads].fc, &reads[nreads].start,
                   &reads[nreads].count) != 3) {
            fprintf(stderr, "bad read %s\n", tok);
            return 2;
        }
        nreads++;
    }
    modbus_t *ctx = modbus_new_tcp(host, port);
    if (!ctx || modbus_connect(ctx) == -1) {
        fprintf(stderr, "connect %s:%d: %s\n", host, port, modbus_strerror(errno));
        return 1;
    }
    modbus_set_response_timeout(ctx, 1, 0);
    float *rtt = malloc(sizeof(float) * MAX_SAMPLES);
    uint16_t regs[256];
    long requests = 0, errors = 0, polls = 0, samples = 0;
    volatile double sink = 0;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = now_s(), t = t0;
    int unit = 1;
    while (t - t0 < seconds) {
        modbus_set_slave(ctx, unit);
        for (int i = 0; i < nreads; i++) {
            double s = now_s();
            int rc = reads[i].fc == 4
                         ? modbus_read_input_registers(ctx, reads[i].start, reads[i].count, regs)
                         : modbus_read_registers(ctx, reads[i].start, reads[i].count, regs);
            t = now_s();
            requests++;
            if (samples < MAX_SAMPLES) rtt[samples++] = (float)(t - s);
            if (rc != reads[i].count) {
                errors++;
                continue;
            }
            for (int k = 0; k + 1 < rc; k += 2) {
                float v = modbus_get_float_abcd(regs + k);
                if (isfinite(v)) sink += v;
            }
        }
        polls++;
        unit = unit % units + 1;
    }
    double wall = now_s() - t0;
    getrusage(RUSAGE_SELF, &r1);
    double user = tv_s(r1.ru_utime) - tv_s(r0.ru_utime);
    double sys = tv_s(r1.ru_stime) - tv_s(r0.ru_stime);
    qsort(rtt, samples, sizeof(float), cmp_float);
    double p50 = samples ? rtt[samples / 2] : 0, p99 = samples ? rtt[(long)(samples * 0.99)] : 0;
    double mean = 0;
    for (long i = 0; i < samples; i++) mean += rtt[i];
    mean = samples ? mean / samples : 0;
    printf("{\"requests\": %ld, \"errors\": %ld, \"polls\": %ld, \"wall_s\": %.4f, "
           "\"cpu_user_s\": %.4f, \"cpu_sys_s\": %.4f, \"cpu_us_per_request\": %.3f, "
           "\"rtt_mean_ms\": %.4f, \"rtt_p50_ms\": %.4f, \"rtt_p99_ms\": %.4f, \"maxrss_kib\": %ld, "
           "\"checksum\": %.6g}\n",
           requests, errors, polls, wall, user, sys,
           requests ? (user + sys) * 1e6 / requests : 0.0, mean * 1e3, p50 * 1e3, p99 * 1e3,
           r1.ru_maxrss, (double)sink);
    modbus_close(ctx);
    modbus_free(ctx);
    return errors == requests ? 1 : 0;
}
