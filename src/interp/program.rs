//! The interpreter's executable form of a lowered function.
//!
//! Statements become a flat list of instructions with jumps ([`Instr`]), so that a GPU
//! thread can stop at a barrier and resume later from its program counter; expressions
//! stay trees ([`CExpr`]) whose variables are resolved to environment slots and whose
//! buffers are resolved to buffer slots.

use super::value::Scalar;
use crate::te::{BinOp, CmpOp, DType, MathFn};

/// A compiled expression with its (scalar) type.
#[derive(Debug)]
pub(crate) struct CExpr {
    /// Element type of the value.
    pub dt: DType,
    /// Number of lanes of the value, known statically (1: always a scalar).
    pub lanes: u32,
    /// What it computes.
    pub node: CNode,
}

/// The node of a compiled expression.
#[derive(Debug)]
pub(crate) enum CNode {
    /// A constant, normalised to the type.
    Const(Scalar),
    /// The variable in this environment slot.
    Var(usize),
    /// A variable not bound where it is used (an error when evaluated); its name.
    Undef(String),
    /// Arithmetic in the operands' type.
    Binary(BinOp, Box<CExpr>, Box<CExpr>),
    /// Comparison (bool).
    Cmp(CmpOp, Box<CExpr>, Box<CExpr>),
    /// Logical and.
    And(Box<CExpr>, Box<CExpr>),
    /// Logical or.
    Or(Box<CExpr>, Box<CExpr>),
    /// Logical not.
    Not(Box<CExpr>),
    /// `cond ? t : f`, all three evaluated.
    Select(Box<CExpr>, Box<CExpr>, Box<CExpr>),
    /// Conversion to the node's type.
    Cast(Box<CExpr>),
    /// Math intrinsic.
    Call(MathFn, Vec<CExpr>),
    /// Buffer read (gather when the index is a vector).
    Load(Access),
    /// `base + k * stride` for each lane `k`.
    Ramp(Box<CExpr>, i64, u32),
    /// A scalar repeated over lanes.
    Broadcast(Box<CExpr>, u32),
    /// Bind the slot to the value, then evaluate the body.
    Let(usize, Box<CExpr>, Box<CExpr>),
}

/// A buffer access: the buffer slot and the indices (one flat index, or one per dimension).
#[derive(Debug)]
pub(crate) struct Access {
    /// Buffer slot.
    pub buf: usize,
    /// Indices as written in the IR.
    pub indices: Vec<CExpr>,
}

/// Where an allocation lives at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemClass {
    /// Outside GPU kernels (any scope): an ordinary buffer, filled with NaNs (its contents
    /// are undefined) at each allocation.
    Host,
    /// `shared` inside a kernel: one buffer per thread block, shared by its threads,
    /// filled with NaNs when the block first allocates it, kept until the block ends.
    Block,
    /// `local` inside a kernel: one buffer per thread, filled with NaNs at each allocation.
    Thread,
}

/// A GPU launch axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Axis {
    /// `blockIdx.{x,y,z}` (0, 1, 2).
    Block(usize),
    /// `threadIdx.{x,y,z}` (0, 1, 2).
    Thread(usize),
}

/// Everything a kernel launch needs.
#[derive(Debug)]
pub(crate) struct KernelInfo {
    /// Extent of every thread-bound loop of the kernel, evaluated when it starts; the
    /// launch dimension of an axis is the largest extent bound to it.
    pub dims: Vec<(Axis, String, CExpr)>,
    /// Buffer slots of `shared` allocations (one per block).
    pub block_bufs: Vec<usize>,
    /// Buffer slots of `local` allocations (one per thread).
    pub thread_bufs: Vec<usize>,
    /// The instruction after the kernel (host code resumes there).
    pub end: usize,
}

/// One instruction. Execution starts at 0 and ends past the last instruction.
#[derive(Debug)]
pub(crate) enum Instr {
    /// Inside a kernel, go on only in the first thread of each warp of 32 (threads
    /// numbered x fastest); the others continue at `target`. Warp-collective intrinsics
    /// run so, once per warp.
    WarpLeaderOnly {
        /// Where the other threads continue.
        target: usize,
    },
    /// Store (scatter when the index is a vector).
    Store {
        /// Destination.
        acc: Access,
        /// Value (same lanes as the index).
        value: CExpr,
    },
    /// Evaluate and discard.
    Eval(CExpr),
    /// Bind a slot.
    Let {
        /// Slot.
        slot: usize,
        /// Value.
        value: CExpr,
    },
    /// Start a serial loop: `var = min`, `end = min + extent`; to `exit` when empty.
    LoopInit {
        /// Slot of the loop variable.
        var: usize,
        /// Hidden slot holding `min + extent`.
        end: usize,
        /// Type of the loop variable.
        dt: DType,
        /// First value.
        min: CExpr,
        /// Trip count.
        extent: CExpr,
        /// Instruction after the loop.
        exit: usize,
    },
    /// Next iteration: `var += 1`; back to `body` while `var < end`.
    LoopNext {
        /// Slot of the loop variable.
        var: usize,
        /// Hidden slot holding `min + extent`.
        end: usize,
        /// Type of the loop variable.
        dt: DType,
        /// First instruction of the body.
        body: usize,
    },
    /// To `target` when the (scalar) condition is false.
    JumpIfNot {
        /// Condition.
        cond: CExpr,
        /// Where to go when false.
        target: usize,
    },
    /// Unconditional jump.
    Jump(usize),
    /// Allocate a buffer (shape evaluated now).
    Alloc {
        /// Buffer slot.
        buf: usize,
        /// Where it lives.
        class: MemClass,
        /// Shape.
        shape: Vec<CExpr>,
    },
    /// End of an allocation's scope.
    Free {
        /// Buffer slot.
        buf: usize,
        /// Where it lives.
        class: MemClass,
    },
    /// Run a GPU kernel whose code starts at the next instruction and ends with `KernelEnd`.
    Launch(Box<KernelInfo>),
    /// A thread-bound loop inside a kernel: `var = min + index` of the axis, or skip the
    /// body (to `exit`) when the index is not below the extent.
    Bind {
        /// Slot of the loop variable.
        var: usize,
        /// Type of the loop variable.
        dt: DType,
        /// The axis.
        axis: Axis,
        /// First value.
        min: CExpr,
        /// Extent.
        extent: CExpr,
        /// Instruction after the loop.
        exit: usize,
    },
    /// Wait until every thread of the block reaches a barrier.
    Barrier,
    /// A thread finishes the kernel.
    KernelEnd,
}

/// Static description of a buffer slot.
#[derive(Debug)]
pub(crate) struct BufInfo {
    /// Name in the IR.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Declared number of dimensions.
    pub ndim: usize,
}

/// A compiled function.
#[derive(Debug)]
pub(crate) struct Program {
    /// The instructions.
    pub code: Vec<Instr>,
    /// Number of environment slots.
    pub n_slots: usize,
    /// Buffer slots: the parameters first, in order, then one per `Allocate`.
    pub bufs: Vec<BufInfo>,
    /// Slot and type of each of the function's shape variables, in order.
    pub shape_var_slots: Vec<(usize, DType)>,
}
