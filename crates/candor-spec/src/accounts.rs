//! User and group names looked up in the system's database when the config is read, so that a
//! name that does not exist is a config error with its position, not a failure at start.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// A user as the user database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The name as written in the config (a number stays a number).
    pub name: String,
    /// The login name the database gives (USER and LOGNAME).
    pub login: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    pub home: PathBuf,
    pub shell: String,
    /// Every group the database puts the user in, the primary one included (what
    /// `initgroups` would give a login).
    pub groups: Vec<u32>,
}

/// Call a `get*_r` function with a buffer that grows until the entry fits, and take what is
/// needed from the entry while the buffer its strings point into still lives.
fn lookup<T, R>(
    mut call: impl FnMut(&mut T, &mut [libc::c_char], &mut *mut T) -> libc::c_int,
    take: impl FnOnce(&T) -> R,
) -> Option<R> {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: a zeroed passwd/group is a valid value for the out-parameter.
        let mut entry: T = unsafe { std::mem::zeroed() };
        let mut result: *mut T = std::ptr::null_mut();
        let rc = call(&mut entry, &mut buf, &mut result);
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return (rc == 0 && !result.is_null()).then(|| take(&entry));
    }
}

/// The gid of group `name` (or a number given as is).
pub fn gid(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Some(n);
    }
    let cname = CString::new(name).ok()?;
    lookup(
        // SAFETY: getgrnam_r writes only into the entry, the buffer (of the length given) and
        // the result pointer.
        |grp: &mut libc::group, buf, result| unsafe {
            libc::getgrnam_r(cname.as_ptr(), grp, buf.as_mut_ptr(), buf.len(), result)
        },
        |g| g.gr_gid,
    )
}

/// User `name` (or a uid; a uid the database does not know is an error, since its group and
/// home would be guesses).
pub fn user(name: &str) -> Result<Account, String> {
    account(name).ok_or_else(|| {
        if name.parse::<u32>().is_ok() {
            format!("uid {name} has no entry in the user database; add one (useradd) or use a user name")
        } else {
            format!("no user \"{name}\" on this system; create it (useradd --system {name}) or fix the name")
        }
    })
}

/// The account of `name` (a login or a uid) with its strings copied out of the lookup buffer.
fn account(name: &str) -> Option<Account> {
    let text = |p: *const libc::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null string of the entry, NUL-terminated inside the live buffer.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let take = |pw: &libc::passwd| {
        let login = text(pw.pw_name);
        Account {
            name: name.to_string(),
            login: login.clone(),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            home: PathBuf::from(text(pw.pw_dir)),
            shell: text(pw.pw_shell),
            groups: group_list(&login, pw.pw_gid),
        }
    };
    match name.parse::<u32>() {
        Ok(uid) => lookup(
            // SAFETY: as in `gid`.
            |pw: &mut libc::passwd, buf, result| unsafe {
                libc::getpwuid_r(uid, pw, buf.as_mut_ptr(), buf.len(), result)
            },
            take,
        ),
        Err(_) => {
            let cname = CString::new(name).ok()?;
            lookup(
                // SAFETY: as in `gid`.
                |pw: &mut libc::passwd, buf, result| unsafe {
                    libc::getpwnam_r(cname.as_ptr(), pw, buf.as_mut_ptr(), buf.len(), result)
                },
                take,
            )
        }
    }
}

/// The groups the database puts `login` in, `gid` first (getgrouplist).
fn group_list(login: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = CString::new(login) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 32;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: getgrouplist writes at most `count` gids into `groups` and sets `count`.
        let rc =
            unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc < 0 {
            if count > n && count < 65536 {
                n = count;
            } else {
                n = n.saturating_mul(4);
            }
            if n > 65536 {
                return vec![gid];
            }
            continue;
        }
        groups.truncate(count.max(0) as usize);
        return groups;
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

    #[test]
    fn users_resolve_by_name_and_uid_with_their_groups() {
        let root = super::user("root").expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.home, std::path::PathBuf::from("/root"));
        assert!(root.groups.contains(&0), "{:?}", root.groups);
        assert_eq!(super::user("0").expect("uid 0").uid, 0);
        let nobody = super::user("nobody").expect("nobody exists");
        assert_eq!(nobody.uid, 65534);
        let err = super::user("no-such-user-candor-test").unwrap_err();
        assert!(err.contains("useradd"), "{err}");
        assert!(super::user("4242999").unwrap_err().contains("uid 4242999"));
    }
}
