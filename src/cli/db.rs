//! `app db roles`: make the database's roles match the model (docs/secrets.md, "Database
//! roles"), from the logins and passwords in the sealed file; `retire` disables a login of a
//! pair after a rotation.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::bail;

use super::exit::{ExitCode, coded};
use super::seal::load_identities;
use crate::config::{DatabaseSettings, SecretString, Settings};
use crate::roles::{self, Login, Model, RoleName, RolesError, Setup, session, sql};
use crate::secrets::{self, Exposed, Identities, Passphrase, SealedFile};

pub(super) const EXAMPLES: &str = "\
Examples:
  # first deploy, or after a rotation: SQL for psql over the pod's local socket
  app db roles -f deploy/overlays/prod/secrets.sealed.yaml -i recovery.key --print-sql \\
    | kubectl exec -i -n discbaboons statefulset/postgres -- \\
      psql -v ON_ERROR_STOP=1 -U postgres -d discbaboons_db
  # a managed database: connect as its admin (database.* settings for the rest)
  APP_DATABASE__HOST=db.example.com app db roles -f prod.sealed.yaml -i recovery.key \\
    --admin-user postgres --admin-password-from POSTGRES_PASSWORD
  # the seed's database, or an install where app_user owns everything
  app db roles -f prod.sealed.yaml -i recovery.key --adopt-from app_user --superuser app_user \\
    --print-sql | kubectl exec -i ...
  # after `kubectl rollout status`: the login the pods no longer use
  app db roles retire discbaboons_app_a -f prod.sealed.yaml -i recovery.key --print-sql | kubectl exec -i ...

Exit codes: 50 unusable input (a missing sealed key, a bad or clashing role name, no such
--adopt-from role); 52 retire refused; 53 the admin login may not manage roles; 54
--print-sql to a terminal; 20-26 the sealed file (see `app seal`).";

/// Options of `app db`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: DbCommand,
}

/// The subcommands of `app db`.
#[derive(Debug, clap::Subcommand)]
enum DbCommand {
    /// Create or update the owner, runtime and login roles, grants and default privileges.
    #[command(after_help = EXAMPLES)]
    Roles(RolesArgs),
}

/// Options of `app db roles`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct RolesArgs {
    #[command(subcommand)]
    action: Option<RolesAction>,
    #[command(flatten)]
    common: Common,
    /// Hand every object of the schema that this role owns to the owner role (the seed's
    /// database and installs before the role model: `app_user`).
    #[arg(long, value_name = "ROLE")]
    adopt_from: Option<String>,
    /// Also set this superuser's password to the sealed POSTGRES_PASSWORD (after adoption:
    /// `app_user` stays the superuser, used by nobody, with a password of its own).
    #[arg(long, value_name = "ROLE")]
    superuser: Option<String>,
    /// Let the API's login create databases, for the restore drill's scratch database
    /// (docs/backups.md); without it the login gets NOCREATEDB.
    #[arg(long)]
    createdb: bool,
}

/// What `app db roles` does besides creating and updating the roles.
#[derive(Debug, clap::Subcommand)]
enum RolesAction {
    /// Disable a login after a rotation: NOLOGIN, no password, its sessions ended.
    Retire {
        /// The login the sealed file no longer names.
        name: String,
    },
}

/// What both actions read.
#[derive(Debug, clap::Args)]
struct Common {
    /// The sealed file whose DATABASE_USER / DATABASE_PASSWORD (and MIGRATE_DATABASE_USER /
    /// MIGRATE_DATABASE_PASSWORD) name the logins. Repeatable: the postgres pod's own file
    /// (postgres.sealed.yaml) holds POSTGRES_PASSWORD for --superuser and
    /// --admin-password-from.
    #[arg(short = 'f', long = "file", value_name = "FILE", global = true)]
    files: Vec<PathBuf>,
    /// Identity file (or a directory of them) that opens the sealed file. Repeatable.
    #[arg(short = 'i', long = "identity", value_name = "PATH", global = true)]
    identities: Vec<PathBuf>,
    /// Print the SQL (for `psql -v ON_ERROR_STOP=1`) instead of connecting; never to a
    /// terminal.
    #[arg(long, global = true)]
    print_sql: bool,
    /// Connect as this role instead of database.user.
    #[arg(long, value_name = "ROLE", global = true)]
    admin_user: Option<String>,
    /// Take the admin's password from this key of the sealed file (e.g. POSTGRES_PASSWORD)
    /// instead of database.password.
    #[arg(long, value_name = "KEY", global = true)]
    admin_password_from: Option<String>,
    /// The schema the migrations build.
    #[arg(long, default_value = "public", global = true)]
    schema: String,
}

/// The opened sealed files: the app's, and the postgres pod's own (POSTGRES_PASSWORD) when
/// `--superuser` or `--admin-password-from` needs it.
struct Sealed {
    files: Vec<(PathBuf, SealedFile)>,
    identities: Identities,
}

impl Sealed {
    fn open(common: &Common) -> anyhow::Result<Sealed> {
        if common.files.is_empty() {
            bail!(coded(
                ExitCode::Usage,
                "give the sealed file that names the logins: -f deploy/overlays/<env>/secrets.sealed.yaml"
            ));
        }
        if common.identities.is_empty() {
            bail!(coded(
                ExitCode::Usage,
                "give an identity that opens the sealed file: -i recovery.key"
            ));
        }
        let mut files = Vec::new();
        for path in &common.files {
            files.push((path.clone(), SealedFile::read(path)?));
        }
        let identities = load_identities(&common.identities, Passphrase::Prompt, Exposed::Warn)?;
        Ok(Sealed { files, identities })
    }

    /// The first file, which names the logins (for messages).
    fn path(&self) -> &std::path::Path {
        &self.files[0].0
    }

    /// The files, for a message about a key none of them has.
    fn names(&self) -> String {
        self.files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// The value of `key`, or `None` when no file has such a key; a key in two files is
    /// refused, since which one counts would be a guess.
    fn get(&self, key: &str) -> anyhow::Result<Option<SecretString>> {
        let mut holders = self
            .files
            .iter()
            .filter(|(_, f)| f.values.contains_key(key));
        let Some((path, file)) = holders.next() else {
            return Ok(None);
        };
        if let Some((other, _)) = holders.next() {
            bail!(coded(
                ExitCode::Usage,
                format!(
                    "{key} is in both {} and {}: keep it in one (`app seal rm` it from the other)",
                    path.display(),
                    other.display()
                )
            ));
        }
        Ok(Some(secrets::open_one(file, path, key, &self.identities)?))
    }

    /// The value of `key`, which must be there.
    fn require(&self, key: &str) -> anyhow::Result<SecretString> {
        self.get(key)?.ok_or_else(|| {
            RolesError::Missing {
                file: self.names(),
                key: key.to_owned(),
            }
            .into()
        })
    }

    /// A login's name under `key`.
    fn role(&self, key: &str) -> anyhow::Result<Option<RoleName>> {
        Ok(match self.get(key)? {
            Some(name) => Some(RoleName::parse(name.expose().trim(), key)?),
            None => None,
        })
    }

    /// The API's login and, when the file has one, migrate's.
    fn logins(&self) -> anyhow::Result<(Login, Option<Login>)> {
        let app_name = self
            .role("DATABASE_USER")?
            .ok_or_else(|| RolesError::Missing {
                file: self.names(),
                key: "DATABASE_USER".into(),
            })?;
        let app = Login::new(app_name, self.require("DATABASE_PASSWORD")?.expose());
        let migrate = match self.role("MIGRATE_DATABASE_USER")? {
            Some(name) => Some(Login::new(
                name,
                self.require("MIGRATE_DATABASE_PASSWORD")?.expose(),
            )),
            None => None,
        };
        Ok((app, migrate))
    }
}

/// Runs `app db ...`.
pub(super) async fn run(args: Args, settings: &Settings) -> anyhow::Result<()> {
    let DbCommand::Roles(args) = args.command;
    let sealed = Sealed::open(&args.common)?;
    let model = Model {
        schema: args.common.schema.clone(),
        owner: group(
            settings.migrate.owner_role.as_deref(),
            roles::DEFAULT_OWNER,
            "migrate.owner_role",
        )?,
        runtime: group(
            settings.migrate.runtime_role.as_deref(),
            roles::DEFAULT_RUNTIME,
            "migrate.runtime_role",
        )?,
    };
    let run = Run {
        common: &args.common,
        sealed: &sealed,
        settings,
    };
    match args.action {
        None => {
            let (app, migrate) = sealed.logins()?;
            let superuser = match &args.superuser {
                Some(name) => Some(Login::new(
                    RoleName::parse(name, "--superuser")?,
                    sealed.require("POSTGRES_PASSWORD")?.expose(),
                )),
                None => None,
            };
            let adopt_from = args
                .adopt_from
                .as_deref()
                .map(|r| RoleName::parse(r, "--adopt-from"))
                .transpose()?;
            let setup = Setup {
                model,
                app,
                migrate,
                adopt_from,
                superuser,
                createdb: args.createdb,
            };
            setup.check()?;
            run.setup(&setup).await
        }
        Some(RolesAction::Retire { name }) => {
            let name = RoleName::parse(&name, "retire")?;
            refuse_current(&sealed, &model, &name)?;
            run.retire(&name).await
        }
    }
}

/// A group role's name: the setting, else the model's default.
fn group(setting: Option<&str>, default: &str, key: &str) -> anyhow::Result<RoleName> {
    Ok(RoleName::parse(setting.unwrap_or(default), key)?)
}

/// One run of `app db roles`: what it reads, and where its SQL goes.
struct Run<'a> {
    common: &'a Common,
    sealed: &'a Sealed,
    settings: &'a Settings,
}

impl Run<'_> {
    /// With --print-sql, prints `statements` and returns `None`; else connects as the admin.
    async fn print_or_connect(
        &self,
        statements: &[String],
    ) -> anyhow::Result<Option<sqlx::PgConnection>> {
        if self.common.print_sql {
            print(statements)?;
            return Ok(None);
        }
        Ok(Some(
            admin_connection(self.common, self.sealed, self.settings).await?,
        ))
    }

    async fn setup(&self, setup: &Setup) -> anyhow::Result<()> {
        let statements = sql::setup(setup);
        let Some(mut conn) = self.print_or_connect(&statements).await? else {
            return Ok(());
        };
        if let Some(from) = &setup.adopt_from
            && !session::exists(&mut conn, from).await?
        {
            bail!(RolesError::NoSuchRole {
                role: from.to_string()
            });
        }
        session::apply(&mut conn, &statements).await?;
        tracing::info!(
            owner = %setup.model.owner,
            runtime = %setup.model.runtime,
            app = %setup.app.name,
            migrate = setup.migrate.as_ref().map(|m| m.name.as_str()).unwrap_or("-"),
            adopted_from = setup.adopt_from.as_ref().map(RoleName::as_str).unwrap_or("-"),
            "the database's roles match the model"
        );
        let _ = sqlx::Connection::close(conn).await;
        Ok(())
    }

    async fn retire(&self, name: &RoleName) -> anyhow::Result<()> {
        let statements = sql::retire(name);
        let mut printed = statements.clone();
        printed.push(sql::terminate(name));
        let Some(mut conn) = self.print_or_connect(&printed).await? else {
            return Ok(());
        };
        // language=PostgreSQL
        let found: Option<bool> =
            sqlx::query_scalar("select rolsuper from pg_catalog.pg_roles where rolname = $1")
                .bind(name.as_str())
                .fetch_optional(&mut conn)
                .await?;
        let reason = match found {
            None => Some("there is no such role"),
            Some(true) => Some("it is a superuser, not a login of a pair"),
            Some(false) => None,
        };
        if let Some(reason) = reason {
            bail!(RolesError::RetireRefused {
                name: name.to_string(),
                reason: reason.into(),
            });
        }
        session::apply(&mut conn, &statements).await?;
        let ended = session::terminate(&mut conn, name).await?;
        tracing::info!(role = %name, sessions_ended = ended, "retired the login");
        let _ = sqlx::Connection::close(conn).await;
        Ok(())
    }
}

/// Refuses to retire a login the sealed file still names, or a group role.
fn refuse_current(sealed: &Sealed, model: &Model, name: &RoleName) -> anyhow::Result<()> {
    if name == &model.owner || name == &model.runtime {
        bail!(RolesError::RetireRefused {
            name: name.to_string(),
            reason: "it is a group role of the model, not a login of a pair".into(),
        });
    }
    for key in ["DATABASE_USER", "MIGRATE_DATABASE_USER"] {
        if sealed.role(key)?.as_ref() == Some(name) {
            bail!(RolesError::RetireRefused {
                name: name.to_string(),
                reason: format!(
                    "{} names it as {key}, so the pods log in as it: seal the other login of \
                     the pair first (`app seal set {} {key} DATABASE_PASSWORD`), roll out, \
                     then retire this one",
                    sealed.path().display(),
                    sealed.path().display()
                ),
            });
        }
    }
    Ok(())
}

/// The SQL on stdout, unless stdout is a terminal.
fn print(statements: &[String]) -> anyhow::Result<()> {
    if std::io::stdout().is_terminal() {
        bail!(RolesError::Terminal);
    }
    print!("{}", sql::script(statements));
    Ok(())
}

/// A connection as the admin: database.* with --admin-user and --admin-password-from.
async fn admin_connection(
    common: &Common,
    sealed: &Sealed,
    settings: &Settings,
) -> anyhow::Result<sqlx::PgConnection> {
    let mut database: DatabaseSettings = settings.database.clone();
    if let Some(user) = &common.admin_user {
        database.user = Some(user.clone());
    }
    if let Some(key) = &common.admin_password_from {
        database.password = Some(sealed.require(key)?);
    }
    let mut conn = crate::db::connect(&database).await?;
    session::check_admin(&mut conn).await?;
    Ok(conn)
}
