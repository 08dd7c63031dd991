//! The one place that decides where tensors live.
//!
//! Everything else takes a [`Device`] from here, so switching between a GPU (wgpu), a software
//! Vulkan adapter and the pure-Rust CPU backend (burn-flex) never touches model code.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, DeviceKind};

/// What the user asked for with `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// A real GPU when wgpu finds one, otherwise the CPU backend.
    #[default]
    Auto,
    /// Any wgpu adapter, software ones (lavapipe) included; fails when there is none.
    Gpu,
    /// The pure-Rust CPU backend: deterministic and always available.
    Cpu,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "gpu" | "wgpu" => Ok(Self::Gpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(format!("unknown device '{other}': use auto, gpu or cpu")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Gpu => "gpu",
            Self::Cpu => "cpu",
        })
    }
}

/// A graphics adapter wgpu can see, reduced to what the device choice needs.
#[derive(Clone, Debug)]
pub struct Adapter {
    /// The adapter's name as the driver reports it.
    pub name: String,
    /// True for adapters that run on the CPU (lavapipe, SwiftShader, WARP).
    pub is_software: bool,
}

/// Lists the adapters wgpu finds through the primary APIs (Vulkan, Metal, DX12); the GL
/// fallback is left out because probing it prints windowing-system noise on headless machines.
pub fn adapters() -> Vec<Adapter> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    descriptor.backends &= wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(descriptor);
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
        .into_iter()
        .map(|adapter| {
            let info = adapter.get_info();
            Adapter {
                name: info.name,
                is_software: info.device_type == wgpu::DeviceType::Cpu,
            }
        })
        .collect()
}

/// The device a command runs on, with a human-readable description for logs and the GUI.
#[derive(Clone, Debug)]
pub struct ResolvedDevice {
    /// The Burn device to create tensors on.
    pub device: Device,
    /// For example "cpu (burn-flex)" or "gpu: NVIDIA H100 (wgpu)".
    pub description: String,
}

/// Turns the user's choice into a Burn device.
pub fn resolve(choice: DeviceChoice) -> Result<ResolvedDevice, String> {
    let cpu = || ResolvedDevice {
        device: Device::flex(),
        description: "cpu (burn-flex)".to_string(),
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Auto => {
            let found = adapters();
            match found.iter().position(|a| !a.is_software) {
                Some(_) => Ok(gpu_device(&found, false)),
                None => Ok(cpu()),
            }
        }
        DeviceChoice::Gpu => {
            let found = adapters();
            if found.is_empty() {
                Err("no GPU adapter found: wgpu sees no Vulkan, Metal, DX12 or GL device \
                     (install a GPU driver, or Mesa's lavapipe for a software one, or use --device cpu)"
                    .to_string())
            } else {
                Ok(gpu_device(&found, true))
            }
        }
    }
}

fn gpu_device(found: &[Adapter], allow_software: bool) -> ResolvedDevice {
    let hardware = found.iter().find(|a| !a.is_software);
    let (kind, adapter) = match hardware {
        Some(adapter) => (DeviceKind::DefaultDevice, adapter),
        None if allow_software => (DeviceKind::Cpu, &found[0]),
        None => unreachable!("callers check for a hardware adapter first"),
    };
    ResolvedDevice {
        device: Device::wgpu(kind),
        description: format!("gpu: {} (wgpu)", adapter.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_choices() {
        assert_eq!("AUTO".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
        assert_eq!("gpu".parse::<DeviceChoice>(), Ok(DeviceChoice::Gpu));
        assert_eq!("cpu".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
        let err = "tpu".parse::<DeviceChoice>().unwrap_err();
        assert!(
            err.contains("tpu") && err.contains("auto, gpu or cpu"),
            "{err}"
        );
    }

    #[test]
    fn cpu_always_resolves() {
        let resolved = resolve(DeviceChoice::Cpu).unwrap();
        assert!(resolved.description.starts_with("cpu"));
    }
}
