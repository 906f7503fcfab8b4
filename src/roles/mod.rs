//! The database's roles: a NOLOGIN owner of the schema, a NOLOGIN runtime role with exactly
//! the API's privileges, and login roles in alternating pairs that are members of one or the
//! other, so that a password rotation never changes who owns what.
//!
//! [`sql`] writes the statements (the same text runs over a direct connection or goes to
//! `psql` with `app db roles --print-sql`); [`session`] is what `migrate` and `db roles` do on
//! a live connection. Passwords only ever leave this module as SCRAM-SHA-256 verifiers.

mod error;
mod name;
pub(crate) mod session;
pub(crate) mod sql;

pub(crate) use error::RolesError;
pub(crate) use name::RoleName;

/// The owner role of a fresh install.
pub(crate) const DEFAULT_OWNER: &str = "discbaboons_owner";
/// The runtime role of a fresh install.
pub(crate) const DEFAULT_RUNTIME: &str = "discbaboons_runtime";

/// The group roles and the schema they are about.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    /// The schema the migrations build (`public`).
    pub schema: String,
    /// Owns the tables, sequences and the history: what `migrate` works as.
    pub owner: RoleName,
    /// What `serve`'s logins are members of.
    pub runtime: RoleName,
}

/// A login role and the verifier of its password.
#[derive(Clone)]
pub(crate) struct Login {
    /// The role's name.
    pub name: RoleName,
    /// `SCRAM-SHA-256$4096:...`: what PostgreSQL stores, never the password itself.
    verifier: String,
}

impl Login {
    /// A login whose password is `password`, hashed here with a fresh salt (and SASLprep,
    /// as PostgreSQL does).
    pub(crate) fn new(name: RoleName, password: &str) -> Login {
        Login {
            name,
            verifier: postgres_protocol::password::scram_sha_256(password.as_bytes()),
        }
    }

    /// The verifier, for `alter role ... password '<verifier>'`.
    pub(crate) fn verifier(&self) -> &str {
        &self.verifier
    }
}

/// The verifier is as good as a password for an offline guess: keep it out of logs too.
impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("name", &self.name)
            .field("verifier", &"<redacted>")
            .finish()
    }
}

/// What `app db roles` makes the database match.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// The group roles.
    pub model: Model,
    /// `serve`'s login (member of the runtime role).
    pub app: Login,
    /// `migrate`'s login (member of the owner role), when it has one of its own.
    pub migrate: Option<Login>,
    /// Hand every object of the schema this role owns over to the owner role.
    pub adopt_from: Option<RoleName>,
    /// A superuser whose password is (re)set, e.g. the bootstrap superuser after adoption.
    pub superuser: Option<Login>,
    /// The API's login may create databases: the restore drill's scratch database (it
    /// creates nothing in the app's database, where it has no CREATE).
    pub createdb: bool,
}

impl Setup {
    /// Refuses a setup whose names clash: the two logins the same, or a login that is one of
    /// the group roles.
    pub(crate) fn check(&self) -> Result<(), RolesError> {
        let groups = [&self.model.owner, &self.model.runtime];
        let mut logins = vec![("DATABASE_USER", &self.app.name)];
        if let Some(m) = &self.migrate {
            logins.push(("MIGRATE_DATABASE_USER", &m.name));
        }
        if self.model.owner == self.model.runtime {
            return Err(RolesError::Clash {
                name: self.model.owner.to_string(),
                reason: "the owner and the runtime role must be two roles".into(),
            });
        }
        for (key, login) in &logins {
            if groups.contains(login) {
                return Err(RolesError::Clash {
                    name: login.to_string(),
                    reason: format!(
                        "{key} names a NOLOGIN group role; seal a login of the pair (e.g. \
                         discbaboons_app_a) under {key}"
                    ),
                });
            }
        }
        if let [(_, app), (_, migrate)] = logins[..]
            && app == migrate
        {
            return Err(RolesError::Clash {
                name: app.to_string(),
                reason: "DATABASE_USER and MIGRATE_DATABASE_USER must differ: the API's login \
                         may not own the schema"
                    .into(),
            });
        }
        Ok(())
    }
}
