//! users: who `exec -u USER` runs as, read from the guest's `/etc/passwd` by hand (the
//! binary is static, so there is no NSS). A name or a numeric uid; a uid with no entry
//! still runs, as `docker exec -u 1234` does, with gid = uid and `/` as home.

/// The account a command runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Finds `user` (a name, or a uid) in the text of `/etc/passwd`.
pub fn find_account(passwd: &str, user: &str) -> Result<Account, String> {
    let numeric: Option<u32> = user.parse().ok();
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || line.starts_with('#') {
            continue;
        }
        let (Ok(uid), Ok(gid)) = (fields[2].parse::<u32>(), fields[3].parse::<u32>()) else {
            continue;
        };
        if fields[0] == user || numeric == Some(uid) {
            return Ok(Account {
                name: fields[0].to_owned(),
                uid,
                gid,
                home: if fields[5].is_empty() {
                    "/".to_owned()
                } else {
                    fields[5].to_owned()
                },
            });
        }
    }
    match numeric {
        Some(uid) => Ok(Account {
            name: uid.to_string(),
            uid,
            gid: uid,
            home: "/".to_owned(),
        }),
        None => Err(format!("no user {user:?} in the guest's /etc/passwd")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # a comment\n\
        broken line\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        alice:x:1000:100:Alice:/home/alice:/bin/sh\n\
        nohome:x:1001:1001:::/bin/sh\n";

    #[test]
    fn users_are_found_by_name_or_uid() {
        /// name, uid, gid, home
        type Found = (&'static str, u32, u32, &'static str);
        let table: &[(&str, Result<Found, &str>)] = &[
            ("root", Ok(("root", 0, 0, "/root"))),
            ("alice", Ok(("alice", 1000, 100, "/home/alice"))),
            ("1000", Ok(("alice", 1000, 100, "/home/alice"))),
            ("nohome", Ok(("nohome", 1001, 1001, "/"))),
            ("4242", Ok(("4242", 4242, 4242, "/"))),
            ("bob", Err("no user \"bob\" in the guest's /etc/passwd")),
            ("", Err("no user \"\" in the guest's /etc/passwd")),
        ];
        for (user, want) in table {
            let got = find_account(PASSWD, user);
            let want = (*want).map(|(name, uid, gid, home)| Account {
                name: name.into(),
                uid,
                gid,
                home: home.into(),
            });
            assert_eq!(got, want.map_err(str::to_owned), "user {user:?}");
        }
    }
}
