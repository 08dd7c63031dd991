//! Matrix products on slices through the `gemm` crate, for the CPU kernels that multiply
//! (the convolution and the linear layer).

/// A matrix read from a slice with the given strides.
#[derive(Clone, Copy)]
pub(super) struct Strided<'a> {
    pub(super) values: &'a [f32],
    pub(super) row_stride: isize,
    pub(super) column_stride: isize,
}

impl<'a> Strided<'a> {
    /// A row-major matrix with rows `row_len` long.
    pub(super) fn rows(values: &'a [f32], row_len: usize) -> Self {
        Self {
            values,
            row_stride: row_len as isize,
            column_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with rows `row_len` long.
    pub(super) fn transposed(values: &'a [f32], row_len: usize) -> Self {
        Self {
            values,
            row_stride: 1,
            column_stride: row_len as isize,
        }
    }

    /// Whether every element of an `rows × columns` matrix lies in the slice.
    fn covers(&self, rows: usize, columns: usize) -> bool {
        rows == 0
            || columns == 0
            || (rows - 1) * (self.row_stride as usize)
                + (columns - 1) * (self.column_stride as usize)
                < self.values.len()
    }
}

/// `dst = lhs · rhs` (`[m, n, k]`: `m × k` times `k × n`, `dst` row-major `m × n`), or `dst += lhs · rhs`
/// when `accumulate`; on the calling thread, or split over rayon's threads when `parallel`
/// (which splits rows and columns only, so the sums are the same either way).
pub(super) fn product(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    lhs: Strided,
    rhs: Strided,
    accumulate: bool,
    parallel: bool,
) {
    product_into([m, n, k], dst, n, lhs, rhs, accumulate, parallel);
}

/// [`product`] into an `m × n` block of a row-major matrix whose rows are `dst_row_stride`
/// long (one head's columns of an attention output, say).
pub(super) fn product_into(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    dst_row_stride: usize,
    lhs: Strided,
    rhs: Strided,
    accumulate: bool,
    parallel: bool,
) {
    let dst_fits =
        m == 0 || n == 0 || (dst_row_stride >= n && (m - 1) * dst_row_stride + n <= dst.len());
    assert!(
        dst_fits && lhs.covers(m, k) && rhs.covers(k, n),
        "matrix product operands out of range"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_row_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the assertion above keeps every element the product reads or writes inside the
    // slices, and `dst` does not alias the operands (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.values.as_ptr(),
            lhs.column_stride,
            lhs.row_stride,
            rhs.values.as_ptr(),
            rhs.column_stride,
            rhs.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            if parallel {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            },
        );
    }
}
