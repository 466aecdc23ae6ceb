//! A seccomp filter refusing io_uring, as container profiles do (Docker's default since
//! 2023): for the tests of the engine under a refused io_uring, and of the tools, which
//! include this file by path (`#[path]`) to install it in a child before `exec`.
#![allow(dead_code)]
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

/// The io_uring system calls on x86_64.
pub const SYS_IO_URING_SETUP: u32 = 425;
/// See [`SYS_IO_URING_SETUP`].
pub const SYS_IO_URING_ENTER: u32 = 426;
/// See [`SYS_IO_URING_SETUP`].
pub const SYS_IO_URING_REGISTER: u32 = 427;
/// All three, as Docker's default profile refuses them.
pub const ALL_IO_URING: [u32; 3] = [
    SYS_IO_URING_SETUP,
    SYS_IO_URING_ENTER,
    SYS_IO_URING_REGISTER,
];

/// EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE (linux/audit.h).
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

// Classic BPF opcodes (linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20)
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP (0x05) | BPF_JEQ (0x10) | BPF_K (0x00)
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

// Offsets in struct seccomp_data.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Installs, on the calling thread (and the threads it spawns from now on, and the programs
/// it executes), a seccomp filter that makes each of `syscalls` (at most three) fail with
/// `errno` and allows every other syscall. Allocates nothing and does not panic, so a child
/// may call it between `fork` and `exec` (`CommandExt::pre_exec`).
pub fn try_refuse(syscalls: &[u32], errno: i32) -> std::io::Result<()> {
    let n = syscalls.len();
    if n == 0 || n > 3 {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let allow = insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW);
    let mut program = [allow; 8];
    // 0: load the arch; 1: another architecture (a 32-bit syscall) is allowed, its numbers
    // are not guessed; 2: load the number; 3..3+n: refused numbers jump to the errno return;
    // 3+n: allow; 4+n: the errno.
    program[0] = insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH);
    program[1] = insn(BPF_JEQ_K, 0, (n + 1) as u8, AUDIT_ARCH_X86_64);
    program[2] = insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR);
    for (i, &syscall) in syscalls.iter().enumerate() {
        program[3 + i] = insn(BPF_JEQ_K, (n - i) as u8, 0, syscall);
    }
    program[3 + n] = allow;
    program[4 + n] = insn(
        BPF_RET_K,
        0,
        0,
        libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
    );
    let prog = libc::sock_fprog {
        len: (n + 5) as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; `prog` and the program it points to outlive the call, and
    // the kernel copies the filter.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// [`try_refuse`] for one syscall on the calling thread, panicking if it cannot.
pub fn refuse(syscall: u32, errno: i32) {
    try_refuse(&[syscall], errno).expect("installing the seccomp filter");
}
