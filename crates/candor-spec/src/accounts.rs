//! Group (and later user) names looked up in the system's database, so that a name that does
//! not exist is a config error with its position, not a failure at start.

use std::ffi::CString;

/// The gid of group `name` (or a number given as is).
pub fn gid(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Some(n);
    }
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: getgrnam_r writes only into `grp`, `buf` (of the length given) and `result`.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return (rc == 0 && !result.is_null()).then_some(grp.gr_gid);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_group_and_numbers_resolve_and_nonsense_does_not() {
        assert_eq!(super::gid("root"), Some(0));
        assert_eq!(super::gid("4242"), Some(4242));
        assert_eq!(super::gid("no-such-group-candor-test"), None);
    }
}
