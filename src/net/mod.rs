pub mod cni;
