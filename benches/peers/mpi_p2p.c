/* Open MPI point-to-point figures for the channels benchmark, measured the way Atoll's are:
 * an 8-byte MPI_Send/MPI_Recv ping-pong (median over batches of round trips), and streaming
 * (osu_bw style: a window of MPI_Isend, the receiver's MPI_Irecv, one acknowledgement per
 * window) at 8 B and 64 KiB, the median over runs.
 *
 * Usage: mpirun -np 2 mpi_p2p BATCHES ROUNDS SMALL_MESSAGES LARGE_MESSAGES RUNS
 * Prints `key value` lines at rank 0:
 *   pingpong_8_ns        median round trip, ns
 *   stream_8_msgs_per_s  median messages/s, 8-byte messages
 *   stream_65536_bytes_per_s  median bytes/s, 64 KiB messages
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 64
#define LARGE 65536

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *samples, int n) {
    qsort(samples, n, sizeof *samples, compare);
    return n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
}

static long arg(char **argv, int argc, int i, long fallback) {
    return i < argc ? atol(argv[i]) : fallback;
}

/* Round trips of an 8-byte message between ranks 0 and 1; the time per round trip at rank 0. */
static double pingpong(int rank, long rounds) {
    char buf[8] = {0};
    double start = MPI_Wtime();
    for (long i = 0; i < rounds; i++) {
        if (rank == 0) {
            MPI_Send(buf, 8, MPI_BYTE, 1, 1, MPI_COMM_WORLD);
            MPI_Recv(buf, 8, MPI_BYTE, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == 1) {
            MPI_Recv(buf, 8, MPI_BYTE, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, 8, MPI_BYTE, 0, 1, MPI_COMM_WORLD);
        }
    }
    return (MPI_Wtime() - start) * 1e9 / (double)rounds;
}

/* `messages` messages of `size` bytes from rank 0 to rank 1, a window at a time; the seconds
 * at rank 0, acknowledgement included. */
static double stream(int rank, long messages, int size, char *buf) {
    MPI_Request requests[WINDOW];
    char ack = 0;
    long windows = (messages + WINDOW - 1) / WINDOW;
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    for (long w = 0; w < windows; w++) {
        for (int i = 0; i < WINDOW; i++) {
            char *slot = buf + (size_t)i * (size_t)size;
            if (rank == 0) {
                MPI_Isend(slot, size, MPI_BYTE, 1, 2, MPI_COMM_WORLD, &requests[i]);
            } else if (rank == 1) {
                MPI_Irecv(slot, size, MPI_BYTE, 0, 2, MPI_COMM_WORLD, &requests[i]);
            }
        }
        if (rank <= 1) {
            MPI_Waitall(WINDOW, requests, MPI_STATUSES_IGNORE);
        }
        if (rank == 0) {
            MPI_Recv(&ack, 1, MPI_BYTE, 1, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == 1) {
            MPI_Send(&ack, 1, MPI_BYTE, 0, 3, MPI_COMM_WORLD);
        }
    }
    return MPI_Wtime() - start;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2) {
        if (rank == 0) fprintf(stderr, "mpi_p2p needs 2 processes\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int batches = (int)arg(argv, argc, 1, 31);
    long rounds = arg(argv, argc, 2, 2000);
    long small = arg(argv, argc, 3, 1000000);
    long large = arg(argv, argc, 4, 20000);
    int runs = (int)arg(argv, argc, 5, 5);
    if (batches < 1 || rounds < 1 || small < 1 || large < 1 || runs < 1) {
        if (rank == 0) fprintf(stderr, "every count must be at least 1\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    double *samples = malloc(sizeof(double) * (size_t)(batches > runs ? batches : runs));
    char *buf = calloc(WINDOW, LARGE);
    if (!samples || !buf) {
        fprintf(stderr, "out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    pingpong(rank, rounds / 10 + 1); /* warm-up */
    for (int b = 0; b < batches; b++) samples[b] = pingpong(rank, rounds);
    if (rank == 0) printf("pingpong_8_ns %.1f\n", median(samples, batches));

    stream(rank, small / 10 + 1, 8, buf);
    for (int r = 0; r < runs; r++) samples[r] = (double)small / stream(rank, small, 8, buf);
    if (rank == 0) printf("stream_8_msgs_per_s %.1f\n", median(samples, runs));

    stream(rank, large / 10 + 1, LARGE, buf);
    for (int r = 0; r < runs; r++)
        samples[r] = (double)large * LARGE / stream(rank, large, LARGE, buf);
    if (rank == 0) printf("stream_65536_bytes_per_s %.1f\n", median(samples, runs));

    free(samples);
    free(buf);
    MPI_Finalize();
    return 0;
}
