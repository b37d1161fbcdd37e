//! The configuration of one schedule template, as the tuning log stores it.

use crate::schedules::{ConvConfig, MatmulConfig, WinogradConfig};
use serde::{Deserialize, Serialize};

/// The knobs of one tunable schedule template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TunedConfig {
    /// conv2d on the micro-kernel ([`crate::schedules::conv2d_nchw_cpu_tensorized_with`]).
    Conv2d(ConvConfig),
    /// The register-blocked matmul ([`crate::schedules::matmul_cpu_with`]) or dense.
    Matmul(MatmulConfig),
    /// A Winograd convolution ([`crate::schedules::conv2d_winograd_cpu_with`]).
    Winograd(WinogradConfig),
}

impl TunedConfig {
    /// The template's name (`"conv2d"`, `"matmul"`).
    pub fn template(&self) -> &'static str {
        match self {
            TunedConfig::Conv2d(_) => "conv2d",
            TunedConfig::Matmul(_) => "matmul",
            TunedConfig::Winograd(_) => "winograd",
        }
    }
}

impl std::fmt::Display for TunedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TunedConfig::Conv2d(c) => write!(
                f,
                "row_tile {} kc {} {:?}{}",
                c.row_tile,
                c.kc,
                c.kernel,
                if c.parallel_rows {
                    " rows parallel"
                } else {
                    ""
                }
            ),
            TunedConfig::Matmul(c) => write!(
                f,
                "mr {} nr {} k_unroll {}{}{}{}",
                c.mr,
                c.nr,
                c.k_unroll,
                if c.pack_b { "" } else { " unpacked" },
                if c.pack_a { " A packed" } else { "" },
                if c.nc > c.nr {
                    format!(" nc {}", c.nc)
                } else {
                    String::new()
                }
            ),
            TunedConfig::Winograd(c) => {
                write!(f, "{}", if c.per_row { "per row" } else { "whole image" })
            }
        }
    }
}
