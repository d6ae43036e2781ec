/* The Open MPI peer of the collectives benchmark (benches/benches/collectives.rs): the same
 * collectives, sizes and timing as Atoll's side, through MPI.
 *
 * Usage: mpirun -np N mpi_collectives ITERS_SMALL ITERS_LARGE BATCHES
 * Rank 0 prints one line per benchmark: "<name> <median ns per operation>".
 * Each batch runs the operation back to back; broadcasts rotate their root (root = i % N), so
 * that no root runs ahead of the others. The figure is the median over batches of the batch's
 * time divided by its operations, as measured at rank 0. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int n) {
    qsort(values, n, sizeof(double), compare);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

enum kind { BARRIER, BCAST, ALLREDUCE };

static void bench(const char *name, enum kind kind, size_t bytes, int iters, int batches,
                  int rank, int size) {
    size_t count = bytes / sizeof(double);
    double *in = calloc(count ? count : 1, sizeof(double));
    double *out = calloc(count ? count : 1, sizeof(double));
    double *times = calloc(batches, sizeof(double));
    for (size_t i = 0; i < count; i++) in[i] = (double)(rank + i);
    for (int b = -1; b < batches; b++) { /* batch -1 warms up */
        MPI_Barrier(MPI_COMM_WORLD);
        double start = MPI_Wtime();
        for (int i = 0; i < iters; i++) {
            switch (kind) {
            case BARRIER: MPI_Barrier(MPI_COMM_WORLD); break;
            case BCAST: MPI_Bcast(in, (int)bytes, MPI_BYTE, i % size, MPI_COMM_WORLD); break;
            case ALLREDUCE:
                MPI_Allreduce(in, out, (int)count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
                break;
            }
        }
        double elapsed = MPI_Wtime() - start;
        if (b >= 0) times[b] = elapsed * 1e9 / iters;
    }
    if (rank == 0) {
        printf("%s %.1f\n", name, median(times, batches));
        fflush(stdout);
    }
    free(in);
    free(out);
    free(times);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int small = argc > 1 ? atoi(argv[1]) : 1000;
    int large = argc > 2 ? atoi(argv[2]) : 20;
    int batches = argc > 3 ? atoi(argv[3]) : 15;
    bench("barrier", BARRIER, 0, small, batches, rank, size);
    bench("broadcast_8", BCAST, 8, small, batches, rank, size);
    bench("broadcast_65536", BCAST, 65536, large * 10, batches, rank, size);
    bench("broadcast_1048576", BCAST, 1048576, large, batches, rank, size);
    bench("allreduce_8", ALLREDUCE, 8, small, batches, rank, size);
    bench("allreduce_65536", ALLREDUCE, 65536, large * 10, batches, rank, size);
    MPI_Finalize();
    return 0;
}
