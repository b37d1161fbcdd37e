//! Host arrays: the typed, 64-byte-aligned buffers kernels are called on.

use crate::error::{Error, Result};
use crate::te::DType;
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// A Rust type that can be an element of an [`NdArray`].
pub trait Element: Copy + Send + Sync + 'static {
    /// The matching loopforge type.
    const DTYPE: DType;
    /// Convert to f64 (for comparisons and printing).
    fn to_f64(self) -> f64;
    /// Convert from f64 (truncating for integers).
    fn from_f64(v: f64) -> Self;
}
macro_rules! elem {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}
elem!(f32, DType::F32);
elem!(f64, DType::F64);
elem!(i32, DType::I32);
elem!(i64, DType::I64);
/// `float16` elements: converted to and from f64 through f32 (see `te::arith`).
impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(v: f64) -> Self {
        half::f16::from_f32(v as f32)
    }
}
/// `bfloat16` elements: converted to and from f64 through f32 (see `te::arith`).
impl Element for half::bf16 {
    const DTYPE: DType = DType::BF16;
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(v: f64) -> Self {
        half::bf16::from_f32(v as f32)
    }
}
impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
}

const ALIGN: usize = 64;

/// A dense, row-major, 64-byte-aligned array of one dtype.
pub struct NdArray {
    dtype: DType,
    shape: Vec<usize>,
    ptr: *mut u8,
    /// Bytes of the elements (`shape` x dtype).
    bytes: usize,
    /// Bytes allocated at `ptr` (at least `bytes`; more after [`NdArray::reshape_in_place`]
    /// to a smaller shape).
    capacity: usize,
}

// The array owns its memory exclusively.
unsafe impl Send for NdArray {}
unsafe impl Sync for NdArray {}

impl NdArray {
    /// A zero-filled array.
    pub fn zeros(shape: &[usize], dtype: DType) -> NdArray {
        let n: usize = shape.iter().product();
        let bytes = n * dtype.bytes();
        let ptr = if bytes == 0 {
            ALIGN as *mut u8
        } else {
            // Safety: size is non-zero and the alignment is a power of two.
            let p = unsafe {
                alloc_zeroed(Layout::from_size_align(bytes, ALIGN).expect("array too large"))
            };
            assert!(!p.is_null(), "out of memory allocating {} bytes", bytes);
            p
        };
        NdArray {
            dtype,
            shape: shape.to_vec(),
            ptr,
            bytes,
            capacity: bytes,
        }
    }

    /// Give the array another shape and dtype in place, reusing its allocation, which must
    /// be large enough (the graph executor's memory plan shares one buffer between values
    /// whose lifetimes do not overlap). The elements' contents are whatever the buffer
    /// held. An allocation too small is an [`Error::Argument`].
    pub fn reshape_in_place(&mut self, shape: &[usize], dtype: DType) -> Result<()> {
        let bytes = shape.iter().product::<usize>() * dtype.bytes();
        if bytes > self.capacity {
            return Err(Error::Argument(format!(
                "cannot view {} bytes as shape {:?} of {} ({} bytes)",
                self.capacity, shape, dtype, bytes
            )));
        }
        self.shape = shape.to_vec();
        self.dtype = dtype;
        self.bytes = bytes;
        Ok(())
    }

    /// Bytes allocated for the elements (at least [`nbytes`](Self::nbytes)).
    pub fn capacity_bytes(&self) -> usize {
        self.capacity
    }

    /// An array from a vector of elements; the length must match the shape.
    pub fn from_vec<T: Element>(shape: &[usize], data: Vec<T>) -> Result<NdArray> {
        Self::from_slice(shape, &data)
    }

    /// An array copied from a slice; the length must match the shape.
    pub fn from_slice<T: Element>(shape: &[usize], data: &[T]) -> Result<NdArray> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Argument(format!(
                "shape {:?} holds {} elements but {} were given",
                shape,
                n,
                data.len()
            )));
        }
        let mut a = NdArray::zeros(shape, T::DTYPE);
        a.as_mut_slice::<T>()?.copy_from_slice(data);
        Ok(a)
    }

    /// An array filled by `f(flat_index)`.
    pub fn from_fn<T: Element>(shape: &[usize], mut f: impl FnMut(usize) -> T) -> NdArray {
        let n: usize = shape.iter().product();
        let mut a = NdArray::zeros(shape, T::DTYPE);
        let s = a
            .as_mut_slice::<T>()
            .expect("dtype matches by construction");
        for (i, x) in s.iter_mut().enumerate().take(n) {
            *x = f(i);
        }
        a
    }

    /// Deterministic pseudo-random values in [-1, 1) (integers in [-8, 8), bools alternate
    /// pseudo-randomly; `float16`/`bfloat16` values are the f32 ones rounded to the half
    /// type), for tests and benchmarks.
    pub fn random(shape: &[usize], dtype: DType, seed: u64) -> NdArray {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        match dtype {
            DType::F32 => NdArray::from_fn(shape, |_| (next() * 2.0 - 1.0) as f32),
            DType::F64 => NdArray::from_fn(shape, |_| next() * 2.0 - 1.0),
            DType::F16 => {
                NdArray::from_fn(shape, |_| half::f16::from_f32((next() * 2.0 - 1.0) as f32))
            }
            DType::BF16 => {
                NdArray::from_fn(shape, |_| half::bf16::from_f32((next() * 2.0 - 1.0) as f32))
            }
            DType::I32 => NdArray::from_fn(shape, |_| (next() * 16.0) as i32 - 8),
            DType::I64 => NdArray::from_fn(shape, |_| (next() * 16.0) as i64 - 8),
            DType::Bool => NdArray::from_fn(shape, |_| next() < 0.5),
        }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Size in bytes.
    pub fn nbytes(&self) -> usize {
        self.bytes
    }
    /// Raw pointer to the first element.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }
    /// Raw mutable pointer to the first element.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
    /// The elements' bytes (native endianness).
    pub fn as_bytes(&self) -> &[u8] {
        if self.bytes == 0 {
            return &[];
        }
        // Safety: the array owns `bytes` initialised bytes at `ptr`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }
    /// The elements' bytes, mutable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        if self.bytes == 0 {
            return &mut [];
        }
        // Safety: as above, and `&mut self` is the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }
    /// The elements' bytes, little-endian (what files store).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut b = self.as_bytes().to_vec();
        if cfg!(target_endian = "big") {
            for c in b.chunks_mut(self.dtype.bytes().max(1)) {
                c.reverse();
            }
        }
        b
    }
    /// [`from_bytes`](Self::from_bytes) from little-endian bytes.
    pub fn from_le_bytes(shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<NdArray> {
        let mut a = NdArray::from_bytes(shape, dtype, bytes)?;
        if cfg!(target_endian = "big") {
            for c in a.as_bytes_mut().chunks_mut(dtype.bytes().max(1)) {
                c.reverse();
            }
        }
        Ok(a)
    }
    /// An array of `shape` and `dtype` holding `bytes` (native endianness); their length
    /// must be the array's size.
    pub fn from_bytes(shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<NdArray> {
        let mut a = NdArray::zeros(shape, dtype);
        if bytes.len() != a.nbytes() {
            return Err(Error::Argument(format!(
                "{} bytes for an array of shape {:?} of {}, which needs {}",
                bytes.len(),
                shape,
                dtype,
                a.nbytes()
            )));
        }
        a.as_bytes_mut().copy_from_slice(bytes);
        Ok(a)
    }

    fn check<T: Element>(&self) -> Result<()> {
        if T::DTYPE != self.dtype {
            return Err(Error::Argument(format!(
                "array holds {} but was accessed as {}",
                self.dtype,
                T::DTYPE
            )));
        }
        Ok(())
    }
    /// The elements, typed; the type must match the array's dtype.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        self.check::<T>()?;
        // Safety: the buffer holds len() initialised elements of T, suitably aligned.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr as *const T, self.len()) })
    }
    /// The elements, typed and mutable.
    pub fn as_mut_slice<T: Element>(&mut self) -> Result<&mut [T]> {
        self.check::<T>()?;
        // Safety: as above, and we hold &mut self.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut T, self.len()) })
    }
    /// A copy of the elements.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        Ok(self.as_slice::<T>()?.to_vec())
    }
    /// Element `i` (flat), converted to f64.
    pub fn get_f64(&self, i: usize) -> f64 {
        // Safety: bounds asserted; pointer typed by dtype.
        assert!(
            i < self.len(),
            "index {} out of bounds for {} elements",
            i,
            self.len()
        );
        unsafe {
            match self.dtype {
                DType::F32 => *(self.ptr as *const f32).add(i) as f64,
                DType::F64 => *(self.ptr as *const f64).add(i),
                DType::F16 => (*(self.ptr as *const half::f16).add(i)).to_f64(),
                DType::BF16 => (*(self.ptr as *const half::bf16).add(i)).to_f64(),
                DType::I32 => *(self.ptr as *const i32).add(i) as f64,
                DType::I64 => *(self.ptr as *const i64).add(i) as f64,
                DType::Bool => (*self.ptr.add(i) != 0) as u8 as f64,
            }
        }
    }
    /// All elements converted to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.get_f64(i)).collect()
    }

    /// Largest absolute difference to `other` (infinite when shapes or dtypes differ;
    /// NaN in one place and not the other counts as infinite).
    pub fn max_abs_diff(&self, other: &NdArray) -> f64 {
        if self.shape != other.shape || self.dtype != other.dtype {
            return f64::INFINITY;
        }
        let mut m: f64 = 0.0;
        for i in 0..self.len() {
            let (a, b) = (self.get_f64(i), other.get_f64(i));
            if a.is_nan() || b.is_nan() {
                if a.is_nan() != b.is_nan() {
                    return f64::INFINITY;
                }
                continue;
            }
            if a == b {
                continue;
            }
            m = m.max((a - b).abs());
        }
        m
    }

    /// Whether every element is within `atol + rtol * |other|` of `other` (compared as
    /// f64: halves through their exact value; NaN only matches NaN, an infinity only
    /// itself).
    pub fn allclose(&self, other: &NdArray, rtol: f64, atol: f64) -> bool {
        if self.shape != other.shape || self.dtype != other.dtype {
            return false;
        }
        (0..self.len()).all(|i| {
            let (a, b) = (self.get_f64(i), other.get_f64(i));
            if a.is_nan() || b.is_nan() {
                return a.is_nan() && b.is_nan();
            }
            if a.is_infinite() || b.is_infinite() {
                // As numpy: an infinity is close only to itself (the tolerance would be
                // infinite too).
                return a == b;
            }
            a == b || (a - b).abs() <= atol + rtol * b.abs()
        })
    }
}

impl Clone for NdArray {
    fn clone(&self) -> NdArray {
        let a = NdArray::zeros(&self.shape, self.dtype);
        // Safety: same size, non-overlapping.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr, a.ptr, self.bytes) };
        a
    }
}

impl Drop for NdArray {
    fn drop(&mut self) {
        if self.capacity > 0 {
            // Safety: allocated in `zeros` with this layout.
            unsafe {
                dealloc(
                    self.ptr,
                    Layout::from_size_align(self.capacity, ALIGN).unwrap(),
                )
            }
        }
    }
}

impl std::fmt::Debug for NdArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.len().min(8);
        let head: Vec<f64> = (0..n).map(|i| self.get_f64(i)).collect();
        write!(
            f,
            "NdArray({}, {:?}, {:?}{})",
            self.dtype,
            self.shape,
            head,
            if self.len() > 8 { "..." } else { "" }
        )
    }
}
