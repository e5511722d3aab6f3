/*
 * weights_cmp A B TOL: compares two --save-weights files (raw float32).
 * Prints the relative L2 difference ||A - B|| / ||B|| and the largest element difference;
 * exits 0 if the relative difference is <= TOL, 1 if not, 2 on a usage or I/O error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static float *weights_read(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) {
        fprintf(stderr, "weights_cmp: %s: cannot open\n", path);
        if (f)
            fclose(f);
        return NULL;
    }
    long bytes = ftell(f);
    rewind(f);
    float *w = malloc(bytes > 0 ? (size_t)bytes : 1);
    if (!w || bytes % 4 || fread(w, 1, (size_t)bytes, f) != (size_t)bytes) {
        fprintf(stderr, "weights_cmp: %s: cannot read %ld bytes of float32\n", path, bytes);
        free(w);
        w = NULL;
    }
    fclose(f);
    *n = bytes / 4;
    return w;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: weights_cmp A B TOL\n");
        return 2;
    }
    long na = 0, nb = 0;
    float *a = weights_read(argv[1], &na), *b = weights_read(argv[2], &nb);
    if (!a || !b || na != nb || na == 0) {
        fprintf(stderr, "weights_cmp: sizes differ or empty (%ld vs %ld values)\n", na, nb);
        return 2;
    }
    double diff2 = 0, ref2 = 0, worst = 0;
    for (long i = 0; i < na; i++) {
        double d = (double)a[i] - b[i];
        diff2 += d * d;
        ref2 += (double)b[i] * b[i];
        worst = fabs(d) > worst ? fabs(d) : worst;
    }
    double rel = sqrt(diff2 / (ref2 > 0 ? ref2 : 1));
    double tol = atof(argv[3]);
    printf("weights_cmp: %ld values, relative L2 difference %.3e, max |diff| %.3e, "
           "tolerance %.1e: %s\n", na, rel, worst, tol, rel <= tol ? "ok" : "TOO DIFFERENT");
    free(a);
    free(b);
    return rel <= tol ? 0 : 1;
}
