//! Interpreter (being written)
