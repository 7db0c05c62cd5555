#!/bin/bash
#
# devstack/plugin.sh -- devstack plugin of nova-vsphere-driver.
#
# Enable with ``enable_plugin nova-vsphere-driver <repository>`` in local.conf
# (devstack/README.rst lists the variables). Devstack sources this file as
# ``plugin.sh <mode> [phase]``:
#
#   stack pre-install  check the settings (fail before anything is installed)
#   stack install      install this project into Nova's Python environment
#   stack post-config  write [DEFAULT] compute_driver, [vsphere], [vsphere_drs]
#                      to $NOVA_CONF; with the simulator, generate its TLS
#                      files and start it (it must be up before n-cpu starts)
#   stack extra        print where nova-compute's vCenter is
#   unstack            stop the simulator
#   clean              remove the simulator's generated files
#
# nova-compute reads $NOVA_CPU_CONF, which devstack makes as a copy of
# $NOVA_CONF when it starts n-cpu, i.e. after post-config: so $NOVA_CONF is
# the file to write (anything written to $NOVA_CPU_CONF here would be
# overwritten by that copy).

# Save trace setting (quiet while the functions are defined)
_XTRACE_NOVA_VSPHERE=$(set +o | grep xtrace)
set +o xtrace

VSPHERE_SIM_SERVICE=vsphere-sim


# Helpers
# -------

function _vsphere_bin_dir {
    echo "${VSPHERE_BIN_DIR:-${NOVA_BIN_DIR:-$(get_python_exec_prefix)}}"
}

function _vsphere_python {
    if [[ -n "$VSPHERE_PYTHON" ]]; then
        echo "$VSPHERE_PYTHON"
    elif [[ -x "$(_vsphere_bin_dir)/python3" ]]; then
        echo "$(_vsphere_bin_dir)/python3"
    else
        echo "${PYTHON:-python3}"
    fi
}

function _vsphere_is_port {
    [[ "$1" =~ ^[0-9]+$ ]] && (( 10#$1 >= 1 && 10#$1 <= 65535 ))
}

# _vsphere_is_loopback <host>: an address (or name) only this machine reaches.
function _vsphere_is_loopback {
    [[ "$1" =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ || "$1" == "::1" || "$1" == "localhost" ]]
}

# _vsphere_iniset_if_set <section> <option> <value>: leave the driver's default
# when the value is empty.
function _vsphere_iniset_if_set {
    if [[ -n "$3" ]]; then
        iniset "$NOVA_CONF" "$1" "$2" "$3"
    fi
}

# Stop with a message naming the variable when the settings cannot work.
function vsphere_check_settings {
    local var
    if [[ "$VSPHERE_USE_SIMULATOR" == "True" ]]; then
        if [[ "$VSPHERE_HOST" != "$VSPHERE_SIM_HOST" || "$VSPHERE_PORT" != "$VSPHERE_SIM_PORT" ]]; then
            die $LINENO "VSPHERE_HOST/VSPHERE_PORT ($VSPHERE_HOST:$VSPHERE_PORT) are for a real" \
                "vCenter; with VSPHERE_USE_SIMULATOR=True set VSPHERE_SIM_HOST/VSPHERE_SIM_PORT" \
                "($VSPHERE_SIM_HOST:$VSPHERE_SIM_PORT) instead"
        fi
        if [[ "$VSPHERE_CA_FILE" != "$VSPHERE_SIM_DATA_DIR/ca.pem" ]]; then
            die $LINENO "VSPHERE_CA_FILE=$VSPHERE_CA_FILE: with VSPHERE_USE_SIMULATOR=True the CA" \
                "is the one generated for the simulator ($VSPHERE_SIM_DATA_DIR/ca.pem); unset it"
        fi
        if ! _vsphere_is_port "$VSPHERE_SIM_PORT"; then
            die $LINENO "VSPHERE_SIM_PORT=$VSPHERE_SIM_PORT is not a port number (1-65535)"
        fi
        # The simulator's command line becomes a systemd ExecStart= line:
        # keep its credentials to characters that need no quoting there.
        for var in VSPHERE_USER VSPHERE_PASSWORD; do
            if [[ ! "${!var}" =~ ^[A-Za-z0-9@._+-]+$ ]]; then
                die $LINENO "$var=${!var}: with VSPHERE_USE_SIMULATOR=True use only letters," \
                    "digits and @._+- (it is passed on the simulator's command line)"
            fi
        done
        if [[ -n "$VSPHERE_SIM_INVENTORY" ]]; then
            if [[ ! -r "$VSPHERE_SIM_INVENTORY" ]]; then
                die $LINENO "VSPHERE_SIM_INVENTORY=$VSPHERE_SIM_INVENTORY: no such file"
            fi
            if [[ -z "$VSPHERE_CLUSTERS" ]]; then
                die $LINENO "VSPHERE_CLUSTERS is required with VSPHERE_SIM_INVENTORY: name the" \
                    "inventory's clusters nova-compute manages (comma-separated)"
            fi
        fi
    else
        for var in VSPHERE_HOST VSPHERE_USER VSPHERE_PASSWORD VSPHERE_CLUSTERS; do
            if [[ -z "${!var}" ]]; then
                die $LINENO "$var is required: set it in local.conf to your vCenter's" \
                    "$(_vsphere_describe "$var"), or set VSPHERE_USE_SIMULATOR=True to use the" \
                    "bundled vCenter simulator"
            fi
        done
        if [[ -n "$VSPHERE_CA_FILE" && ! -r "$VSPHERE_CA_FILE" ]]; then
            die $LINENO "VSPHERE_CA_FILE=$VSPHERE_CA_FILE: no such file"
        fi
    fi
    if ! _vsphere_is_port "$VSPHERE_PORT"; then
        die $LINENO "VSPHERE_PORT=$VSPHERE_PORT is not a port number (1-65535)"
    fi
    if [[ "$VSPHERE_DRS_MODE" != "builtin" && "$VSPHERE_DRS_MODE" != "vcenter" ]]; then
        die $LINENO "VSPHERE_DRS_MODE=$VSPHERE_DRS_MODE: allowed: builtin, vcenter"
    fi
    if [[ -n "$VSPHERE_DRS_MIGRATION_THRESHOLD" && ! "$VSPHERE_DRS_MIGRATION_THRESHOLD" =~ ^[1-5]$ ]]; then
        die $LINENO "VSPHERE_DRS_MIGRATION_THRESHOLD=$VSPHERE_DRS_MIGRATION_THRESHOLD: allowed: 1-5"
    fi
    for var in VSPHERE_DRS_BALANCE_INTERVAL VSPHERE_DRS_MAX_MOVES_PER_PASS; do
        if [[ -n "${!var}" && ! "${!var}" =~ ^[0-9]+$ ]]; then
            die $LINENO "$var=${!var}: allowed: an integer >= 0"
        fi
    done
}

function _vsphere_describe {
    case "$1" in
        VSPHERE_HOST) echo "host name or IP address";;
        VSPHERE_USER) echo "user name";;
        VSPHERE_PASSWORD) echo "password";;
        VSPHERE_CLUSTERS) echo "cluster names nova-compute manages (comma-separated)";;
    esac
}


# Entry points
# ------------

# install_nova_vsphere - install the driver (and its nova/virt/vsphere loading
# shim) into Nova's environment. Editable, like Nova itself in devstack: a
# regular install would put the shim under site-packages/nova/virt/, which is
# not on the path of a Nova installed from /opt/stack/nova.
function install_nova_vsphere {
    setup_develop "$NOVA_VSPHERE_DIR"
}

# configure_nova_vsphere - point Nova at the vCenter (or the simulator).
function configure_nova_vsphere {
    iniset "$NOVA_CONF" DEFAULT compute_driver vsphere.VSphereDriver
    # A resize to another cluster of this nova-compute is a same-host resize.
    iniset "$NOVA_CONF" DEFAULT allow_resize_to_same_host True
    # Server groups are enforced per ESXi host by DRS rules: Nova's per
    # nova-compute checks step aside (README.rst, "Configuration").
    iniset "$NOVA_CONF" workarounds disable_group_policy_check_upcall True
    iniset_multiline "$NOVA_CONF" filter_scheduler available_filters \
        nova.scheduler.filters.all_filters \
        nova_vsphere_driver.scheduler_filters.ServerGroupAntiAffinityFilter
    iniset "$NOVA_CONF" vsphere host_ip "$VSPHERE_HOST"
    iniset "$NOVA_CONF" vsphere host_port "$VSPHERE_PORT"
    iniset "$NOVA_CONF" vsphere host_username "$VSPHERE_USER"
    iniset "$NOVA_CONF" vsphere host_password "$VSPHERE_PASSWORD"
    iniset "$NOVA_CONF" vsphere cluster_names "$VSPHERE_CLUSTERS"
    iniset "$NOVA_CONF" vsphere insecure "$VSPHERE_INSECURE"
    _vsphere_iniset_if_set vsphere ca_file "$VSPHERE_CA_FILE"
    _vsphere_iniset_if_set vsphere datastore_regex "$VSPHERE_DATASTORE_REGEX"
    _vsphere_iniset_if_set vsphere wsdl_location "$VSPHERE_WSDL_LOCATION"
    _vsphere_iniset_if_set vsphere vm_folder "$VSPHERE_VM_FOLDER"

    iniset "$NOVA_CONF" vsphere_drs mode "$VSPHERE_DRS_MODE"
    iniset "$NOVA_CONF" vsphere_drs policy "$VSPHERE_DRS_POLICY"
    _vsphere_iniset_if_set vsphere_drs migration_threshold "$VSPHERE_DRS_MIGRATION_THRESHOLD"
    _vsphere_iniset_if_set vsphere_drs balance_interval "$VSPHERE_DRS_BALANCE_INTERVAL"
    _vsphere_iniset_if_set vsphere_drs max_moves_per_pass "$VSPHERE_DRS_MAX_MOVES_PER_PASS"
    if [[ -n "$VSPHERE_DRS_DRY_RUN" ]]; then
        iniset "$NOVA_CONF" vsphere_drs dry_run "$(trueorfalse False VSPHERE_DRS_DRY_RUN)"
    fi
}

# init_vsphere_sim_tls - a CA and a server certificate for the simulator, at
# fixed paths: ca.pem (nova's [vsphere] ca_file), server.pem, server-key.pem.
function init_vsphere_sim_tls {
    mkdir -p "$VSPHERE_SIM_DATA_DIR"
    rm -f "$VSPHERE_SIM_DATA_DIR/ca.pem" "$VSPHERE_SIM_DATA_DIR/server.pem" \
        "$VSPHERE_SIM_DATA_DIR/server-key.pem"
    "$(_vsphere_python)" -c '
import sys
from nova_vsphere_driver.simulator import tls
host = sys.argv[2]
hosts = ("127.0.0.1", "localhost") if host in ("localhost", "0.0.0.0") else (host, "localhost")
tls.generate(sys.argv[1], hosts=hosts)
' "$VSPHERE_SIM_DATA_DIR" "$VSPHERE_SIM_HOST" \
        || die $LINENO "could not generate the simulator's certificates in $VSPHERE_SIM_DATA_DIR"
}

# start_vsphere_sim - run the simulator as the devstack service vsphere-sim
# and wait until it answers.
function start_vsphere_sim {
    local cmd
    cmd="$(_vsphere_bin_dir)/nova-vsphere-simulator"
    cmd+=" --listen $VSPHERE_SIM_HOST:$VSPHERE_SIM_PORT"
    cmd+=" --tls --cert $VSPHERE_SIM_DATA_DIR/server.pem --key $VSPHERE_SIM_DATA_DIR/server-key.pem"
    # From a file only its owner reads: on the command line, every local
    # user would see the password in the process list.
    local secret=$VSPHERE_SIM_DATA_DIR/password
    (umask 077 && printf '%s\n' "$VSPHERE_PASSWORD" > "$secret") \
        || die $LINENO "could not write the simulator's password file $secret"
    cmd+=" --user $VSPHERE_USER --password-file $secret"
    if ! _vsphere_is_loopback "$VSPHERE_SIM_HOST"; then
        # Setting VSPHERE_SIM_HOST to such an address is the explicit choice
        # the simulator asks for before it listens where others can reach it.
        cmd+=" --allow-remote"
    fi
    if [[ -n "$VSPHERE_SIM_INVENTORY" ]]; then
        cmd+=" --inventory $VSPHERE_SIM_INVENTORY"
    fi
    if [[ -n "$VSPHERE_SIM_EXTRA_ARGS" ]]; then
        cmd+=" $VSPHERE_SIM_EXTRA_ARGS"
    fi
    run_process "$VSPHERE_SIM_SERVICE" "$cmd"

    local url_host=$VSPHERE_SIM_HOST
    if [[ "$url_host" == *:* ]]; then
        url_host="[$url_host]"
    fi
    if ! wait_for_service "$VSPHERE_SIM_START_TIMEOUT" \
            "https://$url_host:$VSPHERE_SIM_PORT/sdk/vimServiceVersions.xml"; then
        die $LINENO "the vCenter simulator did not answer on $VSPHERE_SIM_HOST:$VSPHERE_SIM_PORT" \
            "within $VSPHERE_SIM_START_TIMEOUT s (see: journalctl -u devstack@$VSPHERE_SIM_SERVICE)"
    fi
}

# stop_vsphere_sim - stop the simulator service.
function stop_vsphere_sim {
    stop_process "$VSPHERE_SIM_SERVICE"
}

# cleanup_vsphere_sim - remove what the plugin generated.
function cleanup_vsphere_sim {
    rm -rf "$VSPHERE_SIM_DATA_DIR"
}


# Restore xtrace (the phases below run traced, like the rest of devstack)
$_XTRACE_NOVA_VSPHERE


# Dispatcher
# ----------

if [[ "$1" == "stack" ]]; then
    vsphere_check_settings
    case "$2" in
        pre-install)
            if [[ "${VIRT_DRIVER:-}" == "libvirt" ]] && is_service_enabled n-cpu; then
                # devstack's warn prints its second argument only.
                warn $LINENO "VIRT_DRIVER=libvirt: devstack also installs and configures libvirt, which the vSphere driver does not use; set VIRT_DRIVER=nova-vsphere-driver in local.conf to skip that"
            fi
            ;;
        install)
            if is_service_enabled nova; then
                echo_summary "Installing nova-vsphere-driver"
                install_nova_vsphere
            fi
            ;;
        post-config)
            if is_service_enabled n-cpu; then
                echo_summary "Configuring Nova for vSphere"
                configure_nova_vsphere
            fi
            if is_service_enabled "$VSPHERE_SIM_SERVICE"; then
                echo_summary "Starting the vCenter simulator"
                init_vsphere_sim_tls
                start_vsphere_sim
            fi
            ;;
        extra)
            if is_service_enabled n-cpu; then
                if [[ "$VSPHERE_USE_SIMULATOR" == "True" ]]; then
                    echo_summary "nova-compute manages clusters $VSPHERE_CLUSTERS of the vCenter" \
                        "simulator at https://$VSPHERE_HOST:$VSPHERE_PORT/sdk"
                else
                    echo_summary "nova-compute manages clusters $VSPHERE_CLUSTERS of vCenter" \
                        "https://$VSPHERE_HOST:$VSPHERE_PORT/sdk"
                fi
            fi
            ;;
    esac
fi

if [[ "$1" == "unstack" ]]; then
    if is_service_enabled "$VSPHERE_SIM_SERVICE"; then
        stop_vsphere_sim
    fi
fi

if [[ "$1" == "clean" ]]; then
    cleanup_vsphere_sim
fi

# Local variables:
# mode: shell-script
# End:
