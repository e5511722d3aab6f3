/*
 * Fashion-MNIST (or MNIST) in IDX format, gzip-compressed or plain, read with zlib.
 * Images stay as bytes (47 MB for the training set); a batch is converted to float when
 * it is gathered, so 4 ranks on one machine do not hold 4 float copies of the data set.
 */
#ifndef RDX_TRAINER_DATA_H
#define RDX_TRAINER_DATA_H

#include <stddef.h>
#include <stdint.h>

#define DATA_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define DATA_CLASSES 10

typedef struct dataset {
    int count;          /* number of samples */
    int pixels;         /* rows * cols */
    uint8_t *images;    /* count * pixels */
    uint8_t *labels;    /* count, each < DATA_CLASSES */
} dataset_t;

/*
 * Loads DIR/PREFIX-images-idx3-ubyte[.gz] and DIR/PREFIX-labels-idx1-ubyte[.gz]
 * (prefix "train" or "t10k"). On failure returns -1 with a message naming the file and
 * what is wrong in err, and leaves d empty.
 */
int data_load(dataset_t *d, const char *dir, const char *prefix, char *err, size_t errlen);
void data_free(dataset_t *d);

/* Per-pixel normalisation: (byte / 255 - mean) / std, the Fashion-MNIST training moments. */
void data_gather(const dataset_t *d, const uint32_t *idx, int rows, float *x, uint8_t *y);

#endif
